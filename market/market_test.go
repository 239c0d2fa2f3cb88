package market_test

import (
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// TestDomainImportsOnlyTheStandardLibrary keeps market the pure domain:
// no transport, no database, no third-party module may creep in.
func TestDomainImportsOnlyTheStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/agentmarket/agentmarket/market" {
			t.Errorf("market imports non-standard package %s", p)
		}
	}
	out, err = exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, forbidden := range []string{"net/http", "database/sql"} {
		for _, p := range strings.Fields(string(out)) {
			if p == forbidden {
				t.Errorf("market imports %s", forbidden)
			}
		}
	}
}

func TestTransitionTable(t *testing.T) {
	legal := map[string]market.ContractState{
		"awarded/deliver":                 market.ContractDelivered,
		"awarded/deliver_to_arbiter":      market.ContractInReview,
		"awarded/deliver_checked":         market.ContractSettled,
		"awarded/deliver_rejected":        market.ContractRefunded,
		"awarded/delivery_deadline":       market.ContractRefunded,
		"delivered/accept":                market.ContractSettled,
		"delivered/review_window_elapsed": market.ContractSettled,
		"delivered/dispute":               market.ContractInReview,
		"in_review/verdict_release":       market.ContractSettled,
		"in_review/verdict_refund":        market.ContractRefunded,
		"in_review/reassign_arbiter":      market.ContractInReview,
		"in_review/arbiter_deadline":      market.ContractSettled,
	}
	for _, from := range market.ContractStates() {
		for _, step := range market.Steps() {
			name := string(from) + "/" + string(step)
			t.Run(name, func(t *testing.T) {
				to, err := market.Transition(from, step)
				want, ok := legal[name]
				if ok {
					if err != nil || to != want {
						t.Fatalf("got %s, %v; want %s", to, err, want)
					}
					return
				}
				if market.KindOf(err) != market.Conflict || market.CodeOf(err) != "illegal_transition" {
					t.Fatalf("illegal step gave %v", err)
				}
				if !strings.Contains(err.Error(), string(from)) {
					t.Fatalf("error %q does not name the current state", err)
				}
				if to != from {
					t.Fatalf("an illegal step moved the state to %s", to)
				}
			})
		}
	}
	for _, s := range market.ContractStates() {
		if s.Terminal() != (s == market.ContractSettled || s == market.ContractRefunded) {
			t.Errorf("%s terminal = %v", s, s.Terminal())
		}
	}
}

func TestDIDRoundTrip(t *testing.T) {
	for i := range 50 {
		seed := make([]byte, 32)
		seed[0], seed[31] = byte(i), byte(i*7)
		k, err := market.NewPrivateKeyFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		did := k.Public().DID()
		if !strings.HasPrefix(string(did), "did:key:z6Mk") {
			t.Fatalf("did %s lacks the Ed25519 multibase prefix z6Mk", did)
		}
		pk, err := market.ParseDID(did)
		if err != nil || pk != k.Public() {
			t.Fatalf("parse %s: %v", did, err)
		}
		msg := []byte(fmt.Sprint("message ", i))
		if !pk.Verify(msg, k.Sign(msg)) || pk.Verify(append(msg, '!'), k.Sign(msg)) {
			t.Fatal("signature check is wrong")
		}
	}
	// The W3C did:key test vector for Ed25519.
	const vector = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
	if _, err := market.ParseDID(vector); err != nil {
		t.Fatalf("spec vector: %v", err)
	}
	for _, bad := range []market.AgentID{"", "did:web:example.com", "did:key:z", "did:key:zzzz", "did:key:z0OIl", market.AgentID(vector[:len(vector)-1])} {
		if _, err := market.ParseDID(bad); market.KindOf(err) != market.Invalid {
			t.Errorf("ParseDID(%q) = %v, want invalid", bad, err)
		}
	}
}

func TestPrivateKeyIsNeverPrinted(t *testing.T) {
	k, err := market.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := k.MarshalText()
	secret := strings.TrimPrefix(string(text), "ed25519-priv:")
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, secret) {
			t.Fatalf("printing the key leaked its seed: %s", s)
		}
	}
	var back market.PrivateKey
	if err := back.UnmarshalText(text); err != nil || back.Public() != k.Public() {
		t.Fatalf("key file round trip: %v", err)
	}
}

func TestReceiptChain(t *testing.T) {
	key, _ := market.NewPrivateKeyFromSeed(make([]byte, 32))
	other, _ := market.GenerateKey(nil)
	var chain []market.Receipt
	prev := ""
	for i := uint64(1); i <= 3; i++ {
		r := market.Receipt{Seq: i, Contract: fmt.Sprint("ctr_", i), PriceMicrocredits: 10, PaidMicrocredits: 10,
			Result: market.ResultPaid, QualityBps: 10_000, SettledAt: time.Unix(int64(i), 0), PrevHash: prev}.Sign(key)
		chain = append(chain, r)
		prev = r.Hash()
	}
	if err := market.VerifyReceiptChain(chain, key.Public()); err != nil {
		t.Fatal(err)
	}
	tampered := append([]market.Receipt(nil), chain...)
	tampered[1].PaidMicrocredits = 1_000_000
	if err := market.VerifyReceiptChain(tampered, key.Public()); market.CodeOf(err) != "receipt_bad_signature" {
		t.Fatalf("tampered amount: %v", err)
	}
	if err := market.VerifyReceipt(chain[0], other.Public()); market.CodeOf(err) != "receipt_wrong_market" {
		t.Fatalf("wrong key: %v", err)
	}
	dropped := []market.Receipt{chain[0], chain[2]}
	if err := market.VerifyReceiptChain(dropped, key.Public()); market.CodeOf(err) != "receipt_gap" {
		t.Fatalf("dropped receipt: %v", err)
	}
	relinked := chain[2]
	relinked.Seq, relinked.PrevHash = 2, chain[0].Hash()
	relinked = relinked.Sign(other) // a forger cannot re-sign with the market's key
	if err := market.VerifyReceiptChain([]market.Receipt{chain[0], relinked}, key.Public()); err == nil {
		t.Fatal("a forged link verified")
	}
}

func TestWilsonLowerBound(t *testing.T) {
	cases := []struct {
		name     string
		good, n  float64
		min, max float64
	}{
		{"NoEvidence", 0, 0, 0, 0},
		{"OneLuckyTrade", 1, 1, 0.2, 0.3},
		{"TenPerfect", 10, 10, 0.75, 0.8},
		{"FiftyPerfectIsNotYetNinetyFive", 50, 50, 0.94, 0.95},
		{"SixtyPerfectClearsNinetyFive", 60, 60, 0.95, 0.96},
		{"HalfGood", 500, 1000, 0.47, 0.5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := market.WilsonLowerBound(c.good, c.n)
			if got < c.min || got > c.max || math.IsNaN(got) {
				t.Fatalf("WilsonLowerBound(%v, %v) = %v, want within [%v, %v]", c.good, c.n, got, c.min, c.max)
			}
		})
	}
}

func TestDecayHalvesEvidencePerHalfLife(t *testing.T) {
	t0 := time.Unix(0, 0)
	s := market.ScoreRecord{Good: 8, Bad: 4, UpdatedAt: t0}.At(t0.Add(2*time.Hour), time.Hour)
	if math.Abs(s.Good-2) > 1e-9 || math.Abs(s.Bad-1) > 1e-9 {
		t.Fatalf("after two half-lives got %v/%v, want 2/1", s.Good, s.Bad)
	}
	if w := market.ValueWeight(100, 100); w != 1 {
		t.Fatalf("value weight at the index = %v", w)
	}
	if w := market.ValueWeight(1, 1_000_000); w != 0.25 {
		t.Fatalf("value weight floor = %v", w)
	}
}

func TestErrorsCarryKindAndCode(t *testing.T) {
	err := market.E(market.Op("award"), market.Conflict, market.Code("not_selecting"), "bidding is open")
	wrapped := fmt.Errorf("outer: %w", err)
	if market.KindOf(wrapped) != market.Conflict || market.CodeOf(wrapped) != "not_selecting" {
		t.Fatalf("kind %s code %s", market.KindOf(wrapped), market.CodeOf(wrapped))
	}
	if got := err.Error(); got != "award: bidding is open" {
		t.Fatalf("message %q", got)
	}
	if market.KindOf(errors.New("plain")) != market.Other {
		t.Fatal("a plain error has a kind")
	}
	for k := market.Other; k <= market.Unsupported; k++ {
		if market.KindFromString(k.String()) != k {
			t.Errorf("kind %d does not round-trip through %q", k, k.String())
		}
	}
	inner := market.E(market.NotExist, market.Code("contract_not_found"))
	if outer := market.E(market.Op("deliver"), inner); market.KindOf(outer) != market.NotExist || market.CodeOf(outer) != "contract_not_found" {
		t.Fatalf("nested error lost its kind: %v", outer)
	}
}

func TestRegistrationMessageBindsEveryField(t *testing.T) {
	key, _ := market.NewPrivateKeyFromSeed(make([]byte, 32))
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	r := market.SignRegistration(market.Registration{Name: "a", Operator: "o", Roles: []market.Role{market.RoleBuyer}}, key, now)
	pk := key.Public()
	if !pk.Verify(market.RegistrationMessage(r), r.Proof) {
		t.Fatal("proof does not verify")
	}
	for name, mutate := range map[string]func(*market.Registration){
		"Name":      func(r *market.Registration) { r.Name = "b" },
		"Operator":  func(r *market.Registration) { r.Operator = "p" },
		"Roles":     func(r *market.Registration) { r.Roles = []market.Role{market.RoleSeller} },
		"Timestamp": func(r *market.Registration) { r.Timestamp = r.Timestamp.Add(time.Second) },
	} {
		c := r
		mutate(&c)
		if pk.Verify(market.RegistrationMessage(c), c.Proof) {
			t.Errorf("changing %s kept the proof valid", name)
		}
	}
}
