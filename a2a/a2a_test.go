package a2a_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentmarket/agentmarket/a2a"
	"github.com/agentmarket/agentmarket/market"
)

func TestCanonicalize(t *testing.T) {
	tests := []struct{ name, in, want string }{
		// RFC 8785 section 3.2.2's example.
		{"RFCExample", `{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
			"string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
			"literals": [null, true, false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		// RFC 8785 section 3.2.3: members sort by UTF-16 code units, so
		// the emoji's surrogate pair sorts before U+FB33.
		{"SortsByUTF16", `{"\u20ac":"Euro","\r":"CR","\ufb33":"Dalet","1":"One","\ud83d\ude00":"Emoji","\u0080":"Control","\u00f6":"o"}`,
			"{\"\\r\":\"CR\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"o\",\"\u20ac\":\"Euro\",\"\U0001F600\":\"Emoji\",\"\ufb33\":\"Dalet\"}"},
		{"Numbers", `[0, -0, 1, -1.5, 100, 1e21, 1e20, 123456789012345680000, 0.000001, 1e-7, 5e-324, 9007199254740992]`,
			`[0,0,1,-1.5,100,1e+21,100000000000000000000,123456789012345680000,0.000001,1e-7,5e-324,9007199254740992]`},
		{"NoHTMLEscapes", `{"a":"<b>&\u2028"}`, "{\"a\":\"<b>&\u2028\"}"},
		{"Nested", `{"b":[{"z":1,"a":2}],"a":{}}`, `{"a":{},"b":[{"a":2,"z":1}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a2a.Canonicalize([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	t.Run("DuplicateMembersAreRefused", func(t *testing.T) {
		if _, err := a2a.Canonicalize([]byte(`{"a":{"x":1,"x":2}}`)); err == nil {
			t.Fatal("a duplicate member was accepted")
		}
	})
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1.5e300,"\u0000"]`, `{"\ud83d\ude00":null}`, `"x"`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := a2a.Canonicalize(b)
		if err != nil {
			return
		}
		// The canonical form is valid JSON and a fixed point.
		if !json.Valid(c) {
			t.Fatalf("invalid output %q", c)
		}
		again, err := a2a.Canonicalize(c)
		if err != nil || string(again) != string(c) {
			t.Fatalf("not a fixed point: %q -> %q (%v)", c, again, err)
		}
	})
}

func key(t *testing.T, b byte) market.PrivateKey {
	seed := make([]byte, 32)
	seed[0] = b
	k, err := market.NewPrivateKeyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sellerCard(t *testing.T) (a2a.AgentCard, market.PrivateKey) {
	k := key(t, 1)
	a := market.Agent{ID: k.Public().DID(), Name: "sorter", Operator: "acme", Roles: []market.Role{market.RoleSeller}}
	offers := []market.Offer{
		{ID: "off_1", Seller: a.ID, Intent: "SORT_LIST", BasePriceMicrocredits: 2 * market.Credit, LatencyMs: 60_000,
			Tags: []string{"fast"}, ParameterSchema: json.RawMessage(`{"type":"object"}`), State: market.OfferActive},
		{ID: "off_2", Seller: a.ID, Intent: "FACTOR", BasePriceMicrocredits: 5 * market.Credit, LatencyMs: 1000, State: market.OfferWithdrawn},
	}
	return a2a.ForAgent(a, offers, "https://market.example", key(t, 99).Public().DID()), k
}

func TestAgentCardSkillsAreItsOffers(t *testing.T) {
	c, _ := sellerCard(t)
	if len(c.Skills) != 1 || c.Skills[0].ID != "off_1" || c.Skills[0].Name != "SORT_LIST" {
		t.Fatalf("skills %+v, want the one active offer", c.Skills)
	}
	b, _ := json.Marshal(c)
	for _, field := range []string{`"supportedInterfaces"`, `"protocolBinding"`, `"protocolVersion":"1.0"`, `"defaultInputModes"`, `"securitySchemes"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("card lacks A2A v1.0 field %s: %s", field, b)
		}
	}
	m := a2a.ForMarket("https://market.example", key(t, 99).Public().DID(), "1")
	var ids []string
	for _, s := range m.Skills {
		ids = append(ids, s.ID)
	}
	if strings.Join(ids, ",") != strings.Join(a2a.Operations(), ",") || len(ids) < 10 {
		t.Fatalf("market skills %v", ids)
	}
}

func TestCardSignature(t *testing.T) {
	c, k := sellerCard(t)
	signed, err := a2a.Sign(c, k)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(signed)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Verifies", func(t *testing.T) {
		if err := a2a.Verify(raw, k.Public()); err != nil {
			t.Fatal(err)
		}
		if err := a2a.VerifyCard(signed, k.Public()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("VerifiesWhateverTheMemberOrderAndSpacing", func(t *testing.T) {
		var generic map[string]any
		json.Unmarshal(raw, &generic)
		re, _ := json.MarshalIndent(generic, "", "    ") // sorted keys, other spacing
		if err := a2a.Verify(re, k.Public()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("TamperedCardFails", func(t *testing.T) {
		tampered := strings.Replace(string(raw), `"price_microcredits:2000000"`, `"price_microcredits:2"`, 1)
		if tampered == string(raw) {
			t.Fatal("test did not tamper")
		}
		if err := a2a.Verify([]byte(tampered), k.Public()); !errors.Is(err, a2a.ErrBadSignature) {
			t.Fatalf("Verify(tampered) = %v, want ErrBadSignature", err)
		}
	})
	t.Run("AddedMemberFails", func(t *testing.T) {
		added := strings.Replace(string(raw), `{"name"`, `{"x-payment-address":"attacker","name"`, 1)
		if err := a2a.Verify([]byte(added), k.Public()); !errors.Is(err, a2a.ErrBadSignature) {
			t.Fatalf("Verify(added member) = %v, want ErrBadSignature", err)
		}
	})
	t.Run("OtherKeyFindsNoSignature", func(t *testing.T) {
		if err := a2a.Verify(raw, key(t, 2).Public()); !errors.Is(err, a2a.ErrUnsigned) {
			t.Fatalf("Verify with another key = %v, want ErrUnsigned", err)
		}
	})
	t.Run("DuplicateMemberFails", func(t *testing.T) {
		dup := strings.Replace(string(raw), `{"name":"sorter"`, `{"name":"sorter","name":"evil"`, 1)
		if err := a2a.Verify([]byte(dup), k.Public()); err == nil {
			t.Fatal("a card with a duplicate member verified")
		}
	})
	t.Run("HeaderIsEdDSA", func(t *testing.T) {
		if len(signed.Signatures) != 1 || !strings.HasPrefix(signed.Signatures[0].Protected, "eyJ") {
			t.Fatalf("signatures %+v", signed.Signatures)
		}
	})
}
