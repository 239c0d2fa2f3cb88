package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/market"
)

// readmeBlock returns the lines of the fenced block that follows the
// "<!-- walkthrough: NAME" marker in the README's text.
func readmeBlock(t *testing.T, readme, name string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "<!-- walkthrough: "+name)
	if !ok {
		t.Fatalf("README.md has no walkthrough marker %q", name)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("README.md: no ```sh block after the %q marker", name)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md: the %q block does not end", name)
	}
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// shellWords splits a line of the README's shell subset into words: single
// quotes are literal, double quotes and bare words expand $NAME. Anything
// beyond that subset fails the test, so the README stays within what this
// test runs.
func shellWords(t *testing.T, line string, vars map[string]string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	expand := func(s string) string {
		return regexp.MustCompile(`\$([A-Z_][A-Z0-9_]*)`).ReplaceAllStringFunc(s, func(m string) string {
			v, ok := vars[m[1:]]
			if !ok {
				t.Fatalf("%s: $%s is not set", line, m[1:])
			}
			return v
		})
	}
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'' || c == '"':
			end := strings.IndexByte(line[i+1:], c)
			if end < 0 {
				t.Fatalf("%s: unterminated quote", line)
			}
			s := line[i+1 : i+1+end]
			if c == '"' {
				s = expand(s)
			}
			cur.WriteString(s)
			inWord = true
			i += end + 1
		case strings.IndexByte("|&;<>`\\()", c) >= 0:
			t.Fatalf("%s: %q is beyond the shell this test understands", line, c)
		default:
			j := i
			for j < len(line) && strings.IndexByte(" '\"|&;<>`\\()", line[j]) < 0 {
				j++
			}
			cur.WriteString(expand(line[i:j]))
			inWord = true
			i = j - 1
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

var captureRE = regexp.MustCompile(`^([A-Z_][A-Z0-9_]*)=\$\((.*)\)$`)

// TestREADMEWalkthrough runs the README's two-terminal walkthrough as
// written: terminal 1's serve (on a free port, in a temporary data
// directory), then every command of terminal 2 through run, with shell
// variables captured from -q output. Then it checks the trade's outcome.
func TestREADMEWalkthrough(t *testing.T) {
	readme := string(must[[]byte](t)(os.ReadFile(filepath.Join("..", "..", "README.md"))))
	serveLine := readmeBlock(t, readme, "terminal 1")
	if want := []string{"go run ./cmd/agentmarket serve --data ./agentmarket-data"}; !slices.Equal(serveLine, want) {
		t.Fatalf("terminal 1 is %q; this test starts %q with its own address and data directory", serveLine, want)
	}
	srv := startServe(t, t.TempDir(), "127.0.0.1:0")
	t.Chdir(t.TempDir()) // the key files land here
	env := map[string]string{"AGENTMARKET_SERVER": srv.URL}
	getenv := func(k string) string { return env[k] }

	lines := readmeBlock(t, readme, "terminal 2")
	if lines[0] != "go build -o agentmarket ./cmd/agentmarket" {
		t.Fatalf("terminal 2 starts with %q, not the build this test stands in for", lines[0])
	}
	vars := map[string]string{}
	outputs := map[string]string{} // each command's first word after the binary, to its output
	for _, line := range lines[1:] {
		capture, cmd := "", line
		if m := captureRE.FindStringSubmatch(line); m != nil {
			capture, cmd = m[1], m[2]
		}
		words := shellWords(t, cmd, vars)
		if len(words) == 0 || words[0] != "./agentmarket" {
			t.Fatalf("%s: want ./agentmarket commands only", line)
		}
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), words[1:], getenv, strings.NewReader(""), &stdout, &stderr); err != nil {
			t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", line, err, stdout.String(), stderr.String())
		}
		t.Logf("$ %s\n%s%s", line, stderr.String(), stdout.String())
		if capture != "" {
			v := strings.TrimSpace(stdout.String())
			if v == "" || strings.ContainsAny(v, " \n") {
				t.Fatalf("%s: printed %q, want one id", line, v)
			}
			vars[capture] = v
		}
		outputs[words[1]] += stdout.String()
	}

	for cmd, want := range map[string]string{
		"deliver": "the sort checker passed",
		"receipt": "receipt 1 verified",
	} {
		if !strings.Contains(outputs[cmd], want) {
			t.Errorf("%s printed\n%s\nwant it to say %q", cmd, outputs[cmd], want)
		}
	}
	// The README's account of the outcome: the seller has its grant and the
	// price, the buyer its grant less the price and the 1% fee.
	for _, who := range []struct{ file, balance string }{{"seller.key", "102 cr"}, {"buyer.key", "97.98 cr"}} {
		key, err := readAgentKey(who.file)
		if err != nil {
			t.Fatal(err)
		}
		b := must[market.Balance](t)(client.New(srv.URL, key).Balance(t.Context(), key.Public().DID()))
		if got := credits(b.PostedMicrocredits); got != who.balance || b.HeldMicrocredits != 0 {
			t.Errorf("%s: posted %s, held %d µcr; the README says %s and nothing held", who.file, got, b.HeldMicrocredits, who.balance)
		}
	}
	k := must[market.Contract](t)(client.New(srv.URL, must[market.PrivateKey](t)(readAgentKey("buyer.key"))).Contract(t.Context(), vars["CONTRACT"]))
	if k.State != market.ContractSettled || k.HoldMicrocredits != 2_020_000 {
		t.Errorf("contract %s held %s; the README says settled, 2.02 cr held", k.State, credits(k.HoldMicrocredits))
	}
}

// cliRunner runs client commands against one server, as one shell would.
type cliRunner struct {
	t   *testing.T
	url string
}

// ok runs a command that must succeed and returns its standard output.
func (c cliRunner) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("agentmarket %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fails runs a command that must fail, and returns its error's text.
func (c cliRunner) fails(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err == nil {
		c.t.Fatalf("agentmarket %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return err.Error()
}

func (c cliRunner) run(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string {
		if k == "AGENTMARKET_SERVER" {
			return c.url
		}
		return ""
	}
	err := run(c.t.Context(), args, getenv, strings.NewReader(""), &stdout, &stderr)
	return stdout.String(), err
}

// id runs a command with -q and returns the id it printed.
func (c cliRunner) id(args ...string) string {
	c.t.Helper()
	return strings.TrimSpace(c.ok(append(args, "-q")...))
}

// TestCLICommands drives the rest of the client commands against a real
// server: negotiation and acceptance, a dispute and an arbiter's review,
// the operator's mint and mandate, discovery, events, JSON output, and
// errors that carry the problem's code.
func TestCLICommands(t *testing.T) {
	data := t.TempDir()
	srv := startServe(t, data, "127.0.0.1:0")
	c := cliRunner{t: t, url: srv.URL}
	dir := t.TempDir()
	keys := map[string]string{}
	dids := map[string]string{}
	for _, name := range []string{"buyer", "seller", "arbiter"} {
		keys[name] = filepath.Join(dir, name+".key")
		dids[name] = strings.TrimSpace(c.ok("keygen", "--out", keys[name]))
		if got := c.id("register", "--key", keys[name], "--name", name, "--operator", "op-"+name, "--roles", name); got != dids[name] {
			t.Fatalf("register printed %q, want %q", got, dids[name])
		}
	}
	opKey := filepath.Join(data, "operator.key")

	t.Run("KeygenRefusesToOverwrite", func(t *testing.T) {
		if msg := c.fails("keygen", "--out", keys["buyer"]); !strings.Contains(msg, "exists") {
			t.Fatalf("error %q", msg)
		}
	})

	offer := c.id("offer", "publish", "--key", keys["seller"], "--intent", "SORT_LIST", "--base-price", "2cr",
		"--latency-ms", "60000", "--tag", "fast", "--tag", "cheap")
	t.Run("OfferListAndShowAsJSON", func(t *testing.T) {
		var ms []market.OfferMatch
		if err := json.Unmarshal([]byte(c.ok("offer", "list", "--intent", "SORT_LIST", "--max-price", "2000000", "--json")), &ms); err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].Offer.ID != offer || !slices.Equal(ms[0].Offer.Tags, []string{"fast", "cheap"}) {
			t.Fatalf("offers %+v", ms)
		}
		if out := c.ok("offer", "list", "--intent", "SORT_LIST", "--max-price", "1.999999cr"); !strings.Contains(out, "no active offers") {
			t.Fatalf("an offer above --max-price was listed:\n%s", out)
		}
		if out := c.ok("offer", "show", offer); !strings.Contains(out, "2 cr") {
			t.Fatalf("offer show:\n%s", out)
		}
	})

	// postAndBid posts a buyer-reviewed intent, bids on it and waits for
	// bidding to close.
	postAndBid := func(price string) (intent, bid string) {
		t.Helper()
		intent = c.id("intent", "post", "--key", keys["buyer"], "--intent", "SORT_LIST", "--params", `{"items":[2,1]}`,
			"--budget", "5cr", "--bid-window", "300ms")
		if out := c.ok("intents", "--key", keys["seller"], "--eligible"); !strings.Contains(out, intent) {
			t.Fatalf("intents --eligible does not list %s:\n%s", intent, out)
		}
		bid = c.id("bid", "--key", keys["seller"], "--intent", intent, "--price", price, "--latency-ms", "60000", "--note", "fast")
		if out := c.ok("bids", "--key", keys["buyer"], "--wait", intent); !strings.Contains(out, bid) {
			t.Fatalf("bids --wait does not list %s:\n%s", bid, out)
		}
		return intent, bid
	}

	t.Run("NegotiateAwardDeliverAccept", func(t *testing.T) {
		intent, bid := postAndBid("3cr")
		c.ok("counter", "--key", keys["buyer"], "--bid", bid, "--price", "2.5cr")
		if out := c.ok("counter", "--key", keys["seller"], "--bid", bid, "--accept"); !strings.Contains(out, "accepted 2.5 cr") {
			t.Fatalf("counter --accept:\n%s", out)
		}
		contract := c.id("award", "--key", keys["buyer"], "--intent", intent, "--bid", bid)
		if out := c.ok("deliver", "--key", keys["seller"], "--contract", contract, "--output", `{"items":[1,2]}`); !strings.Contains(out, "delivered") {
			t.Fatalf("deliver:\n%s", out)
		}
		var k market.Contract
		if err := json.Unmarshal([]byte(c.ok("accept", "--key", keys["buyer"], "--contract", contract, "--quality", "0.9", "--json")), &k); err != nil {
			t.Fatal(err)
		}
		if k.State != market.ContractSettled || k.Outcome.PaidMicrocredits != 2_500_000 {
			t.Fatalf("accepted contract %s %+v", k.State, k.Outcome)
		}
		if out := c.ok("contracts", "--key", keys["seller"], "--state", "settled"); !strings.Contains(out, contract) {
			t.Fatalf("contracts:\n%s", out)
		}
	})

	audited := 0 // deliveries the market audited, each costing an intent more
	t.Run("DisputeAndArbiterReview", func(t *testing.T) {
		c.ok("bond", "--key", keys["arbiter"], "--amount", "10cr")
		// The market sends a random sample of deliveries to an arbiter on
		// its own account (engine.Config.SampleRate); an audited delivery is
		// not the buyer's to dispute, so the arbiter settles it and the
		// buyer trades again.
		var contract string
		for {
			intent, bid := postAndBid("2cr")
			contract = c.id("award", "--key", keys["buyer"], "--intent", intent, "--bid", bid)
			var d market.Contract
			if err := json.Unmarshal([]byte(c.ok("deliver", "--key", keys["seller"], "--contract", contract, "--output", `{"items":[2,1]}`, "--json")), &d); err != nil {
				t.Fatal(err)
			}
			if d.State != market.ContractInReview {
				break
			}
			c.ok("review", "--key", keys["arbiter"], "--contract", contract, "--quality", "1", "--verdict", "release")
			audited++
		}
		if out := c.ok("dispute", "--key", keys["buyer"], "--contract", contract, "--reason", "not sorted"); !strings.Contains(out, "in review") {
			t.Fatalf("dispute:\n%s", out)
		}
		out := c.ok("review", "--key", keys["arbiter"], "--contract", contract, "--quality", "0.5", "--verdict", "partial")
		if !strings.Contains(out, "partial (arbiter_verdict): paid 1 cr") {
			t.Fatalf("review:\n%s", out)
		}
		if out := c.ok("contract", "show", contract, "--key", keys["buyer"]); !strings.Contains(out, "not sorted") {
			t.Fatalf("contract show:\n%s", out)
		}
	})

	t.Run("ReceiptsVerifyOnlineAndOffline", func(t *testing.T) {
		file := filepath.Join(dir, "receipt.json")
		if err := os.WriteFile(file, []byte(c.ok("receipt", "show", "2", "--json")), 0o644); err != nil {
			t.Fatal(err)
		}
		var check receiptCheck
		if err := json.Unmarshal([]byte(c.ok("receipt", "verify", "2", "--json")), &check); err != nil {
			t.Fatal(err)
		}
		if !check.Verified || check.PreviousLinked == nil || !*check.PreviousLinked {
			t.Fatalf("receipt verify 2: %+v", check)
		}
		// Offline: a file and a key, and no server at all.
		offline := cliRunner{t: t, url: "http://127.0.0.1:1"}
		if out := offline.ok("receipt", "verify", "--file", file, "--market-key", string(check.MarketKey)); !strings.Contains(out, "receipt 2 verified") {
			t.Fatalf("offline verify:\n%s", out)
		}
		// A tampered receipt fails with the problem's code.
		var r market.Receipt
		json.Unmarshal(must[[]byte](t)(os.ReadFile(file)), &r)
		r.PaidMicrocredits++
		os.WriteFile(file, must[[]byte](t)(json.Marshal(r)), 0o644)
		if msg := offline.fails("receipt", "verify", "--file", file, "--market-key", string(check.MarketKey)); !strings.Contains(msg, "receipt_bad_signature") {
			t.Fatalf("tampered receipt: %s", msg)
		}
		other := must[market.PrivateKey](t)(market.GenerateKey(nil))
		if msg := c.fails("receipt", "verify", "2", "--market-key", string(other.Public().DID())); !strings.Contains(msg, "receipt_wrong_market") {
			t.Fatalf("wrong market key: %s", msg)
		}
	})

	t.Run("OperatorMintsAndSetsMandates", func(t *testing.T) {
		var before, after market.Balance
		json.Unmarshal([]byte(c.ok("balance", "--key", opKey, "--agent", dids["buyer"], "--json")), &before)
		json.Unmarshal([]byte(c.ok("mint", "--key", opKey, "--agent", dids["buyer"], "--amount", "50cr", "--json")), &after)
		if after.PostedMicrocredits != before.PostedMicrocredits+50*market.Credit {
			t.Fatalf("mint: %+v then %+v", before, after)
		}
		if msg := c.fails("mint", "--key", keys["buyer"], "--agent", dids["buyer"], "--amount", "50cr"); !strings.Contains(msg, "mint: operator_required") {
			t.Fatalf("an agent minted: %s", msg)
		}
		c.ok("mandate", "set", "--key", opKey, "--agent", dids["buyer"], "--max-per-transfer", "1cr")
		intent, bid := postAndBid("2cr")
		if msg := c.fails("award", "--key", keys["buyer"], "--intent", intent, "--bid", bid); !strings.Contains(msg, "award: mandate_violated") {
			t.Fatalf("award beyond the mandate: %s", msg)
		}
		if out := c.ok("mandate", "set", "--key", opKey, "--agent", dids["buyer"]); !strings.Contains(out, "removed") {
			t.Fatalf("mandate set with no limits:\n%s", out)
		}
		c.ok("award", "--key", keys["buyer"], "--intent", intent, "--bid", bid)
		c.ok("intent", "show", intent)
	})

	t.Run("Events", func(t *testing.T) {
		var evs []market.Event
		if err := json.Unmarshal([]byte(c.ok("events", "--key", keys["seller"], "--types", "intent.posted", "--json")), &evs); err != nil {
			t.Fatal(err)
		}
		if len(evs) != 3+audited {
			t.Fatalf("the seller saw %d intent.posted events, want %d", len(evs), 3+audited)
		}
		if out := c.ok("events", "--key", keys["buyer"], "--after", fmt.Sprint(evs[len(evs)-2].Seq), "--types", "intent.posted"); strings.Count(out, "intent.posted") != 1 {
			t.Fatalf("events --after:\n%s", out)
		}

		// --follow streams JSON lines until interrupted, then exits cleanly.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		out := &syncBuffer{}
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"events", "--key", keys["seller"], "--server", srv.URL, "--types", "intent.posted", "--follow", "--json"},
				func(string) string { return "" }, strings.NewReader(""), out, io.Discard)
		}()
		waitFor(t, "the three past intents on the stream", func() bool { return strings.Count(out.String(), "\n") >= 3 })
		intent := c.id("intent", "post", "--key", keys["buyer"], "--intent", "SORT_LIST", "--params", `{"items":[1]}`, "--budget", "1cr")
		waitFor(t, "the new intent on the stream", func() bool { return strings.Contains(out.String(), intent) })
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("events --follow: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var ev market.Event
			if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Type != market.EventIntentPosted {
				t.Fatalf("line %q: %v", line, err)
			}
		}
	})

	t.Run("ErrorsShowTheProblemCode", func(t *testing.T) {
		cases := []struct {
			args []string
			want string
		}{
			{[]string{"intent", "show", "int_nope"}, "intent show: intent_not_found: "},
			{[]string{"balance", "--key", keys["buyer"], "--agent", dids["seller"]}, "balance: not_your_wallet: "},
			{[]string{"bid", "--key", keys["seller"], "--intent", "int_nope", "--price", "2.5", "--latency-ms", "1"}, "ambiguous"},
			{[]string{"bid", "--key", keys["seller"], "--intent", "int_nope", "--price", "2cr", "--latency-ms", "1"}, "bid: intent_not_found"},
			{[]string{"balance"}, "--key is required"},
			{[]string{"award", "--key", keys["buyer"]}, "--bid, --intent required"},
			{[]string{"offer"}, "usage: agentmarket offer"},
			{[]string{"balance", "--key", keys["buyer"], "--server", "http://127.0.0.1:1"}, "balance: unavailable: the market is unreachable"},
		}
		for _, tc := range cases {
			if msg := c.fails(tc.args...); !strings.Contains(msg, tc.want) {
				t.Errorf("agentmarket %s: %q, want it to contain %q", strings.Join(tc.args, " "), msg, tc.want)
			}
		}
		err := fmt.Errorf("wrapped: %w", &problemError{cmd: "bid", err: &market.Error{Kind: market.Conflict, Code: "bidding_closed"}})
		if !market.Is(err, market.Conflict) || market.CodeOf(err) != "bidding_closed" {
			t.Errorf("a problemError does not unwrap to its market error")
		}
	})
}

func TestParseAmount(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  string
	}{
		{"2500000", 2_500_000, ""},
		{"2_500_000", 2_500_000, ""},
		{"2500000ucr", 2_500_000, ""},
		{"2500000µcr", 2_500_000, ""},
		{"2.5cr", 2_500_000, ""},
		{"2.5CR", 2_500_000, ""},
		{"0.000001cr", 1, ""},
		{"1cr", market.Credit, ""},
		{"0", 0, ""},
		{"9223372036854.775807cr", 1<<63 - 1, ""},
		{"9223372036854.775808cr", 0, "too large"},
		{"9223372036854775808", 0, "too large"},
		{"0.0000001cr", 0, "more than six decimals"},
		{"2.5", 0, "ambiguous"},
		{"-1", 0, "negative"},
		{"-1cr", 0, "negative"},
		{"1e6", 0, "want credits"},
		{"", 0, "want credits"},
		{"cr", 0, "want credits"},
		{".5cr", 0, "want credits"},
		{"5.cr", 0, "want credits"},
		{"0x10", 0, "want credits"},
	}
	for _, tc := range cases {
		got, err := parseAmount(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("parseAmount(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseAmount(%q) = %d, %v; want an error saying %q", tc.in, got, err, tc.err)
		}
	}
}

func TestCreditsFormatsExactly(t *testing.T) {
	for v, want := range map[int64]string{
		0: "0 cr", 1: "0.000001 cr", 2_500_000: "2.5 cr", 97_980_000: "97.98 cr", -20_000: "-0.02 cr",
		1<<63 - 1: "9223372036854.775807 cr",
	} {
		if got := credits(v); got != want {
			t.Errorf("credits(%d) = %q, want %q", v, got, want)
		}
		if v >= 0 {
			back, err := parseAmount(strings.ReplaceAll(want, " ", ""))
			if err != nil || back != v {
				t.Errorf("parseAmount(credits(%d)) = %d, %v", v, back, err)
			}
		}
	}
}
