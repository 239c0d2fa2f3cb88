package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/market"
)

// The client commands (keygen, register, balance, offer, intent, bid, …)
// each act as one agent through the Go SDK against a running market. This
// file holds what they share: the --server, --key, --json and -q flags,
// amounts in credits or microcredits, JSON arguments, output, and errors
// that show the problem's code.

// defaultServer is where "agentmarket serve" listens by default.
const defaultServer = "http://127.0.0.1:8080"

// cliOptions are the flags every client command takes.
type cliOptions struct {
	name    string // the command, such as "offer publish", for errors
	server  string
	keyPath string
	json    bool
	quiet   bool
	key     market.PrivateKey // read by connect
}

// clientFlags returns the flag set of a client command, with --server,
// --key and --json. A command that creates something also takes -q, which
// prints only the new object's id for shell variables.
func (e *env) clientFlags(name string, quiet bool) (*flag.FlagSet, *cliOptions) {
	fs := e.flags(name)
	o := &cliOptions{name: name}
	fs.StringVar(&o.server, "server", e.envOr("AGENTMARKET_SERVER", defaultServer), "the market's base URL (env AGENTMARKET_SERVER)")
	fs.StringVar(&o.keyPath, "key", e.getenv("AGENTMARKET_KEY"), "file holding your private key, from agentmarket keygen (env AGENTMARKET_KEY)")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON (the SDK's return value) for scripts")
	if quiet {
		fs.BoolVar(&o.quiet, "q", false, "print only the new object's id")
	}
	return fs, o
}

// parseArgs parses flags wherever they stand among the positional
// arguments ("intent show ID --json" as well as "intent show --json ID"),
// and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseNoArgs parses a command that takes flags only.
func (o *cliOptions) parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", o.name, pos)
	}
	return nil
}

// parseOneArg parses a command that takes one positional argument, named
// what in the error when it is missing.
func (o *cliOptions) parseOneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("usage: agentmarket %s %s [flags]", o.name, what)
	}
	return pos[0], nil
}

// require reports the named flags that were left empty.
func (o *cliOptions) require(flags map[string]string) error {
	var missing []string
	for name, v := range flags {
		if v == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return fmt.Errorf("%s: %s required", o.name, strings.Join(missing, ", "))
}

// connect returns a client of the market. With needKey the command signs
// as the key in --key; without it, the key is used when given and the
// client is anonymous otherwise (public reads).
func (o *cliOptions) connect(needKey bool) (*client.Client, error) {
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: --server %q: want a URL such as %s", o.name, o.server, defaultServer)
	}
	if needKey || o.keyPath != "" {
		if o.key, err = readAgentKey(o.keyPath); err != nil {
			return nil, fmt.Errorf("%s: %w", o.name, err)
		}
	}
	// A person is waiting: retry a busy or restarting market briefly,
	// then say so.
	return client.New(o.server, o.key, client.WithRetries(3), client.WithBackoff(100*time.Millisecond, time.Second)), nil
}

// show prints a command's result: v as JSON with --json, id alone with
// -q, and human text otherwise.
func (o *cliOptions) show(e *env, v any, id string, human func(w io.Writer)) error {
	switch {
	case o.json:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("%s: encode JSON: %w", o.name, err)
		}
		_, err = e.stdout.Write(append(b, '\n'))
		return err
	case o.quiet:
		_, err := fmt.Fprintln(e.stdout, id)
		return err
	}
	var b strings.Builder
	human(&b)
	_, err := io.WriteString(e.stdout, b.String())
	return err
}

// fail turns a failed call into the command's error. A market error shows
// its stable code and its message; an unreachable market says where the
// command looked.
func (o *cliOptions) fail(err error) error {
	var me *market.Error
	if !errors.As(err, &me) {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	f := &problemError{cmd: o.name, err: me}
	if me.Code == "unavailable" {
		f.hint = fmt.Sprintf("is agentmarket serve running at %s? set --server or AGENTMARKET_SERVER", o.server)
	}
	return f
}

// problemError is a market error as the CLI prints it:
// "bid: bidding_closed: intent int_… is selecting; bidding closed at …".
type problemError struct {
	cmd  string
	err  *market.Error
	hint string
}

func (p *problemError) Error() string {
	var b strings.Builder
	b.WriteString(p.cmd + ": " + p.err.Code + ": ")
	b.WriteString(market.MessageOf(p.err))
	if p.err.Err != nil {
		b.WriteString(": " + p.err.Err.Error())
	}
	if p.hint != "" {
		b.WriteString(" (" + p.hint + ")")
	}
	return b.String()
}

func (p *problemError) Unwrap() error { return p.err }

// amountFlag is a flag holding an amount of money. It reads credits with a
// "cr" suffix ("2.5cr", at most six decimals) and integer microcredits
// bare or with a "ucr"/"µcr" suffix ("2500000", "2500000ucr"); see
// parseAmount.
type amountFlag struct{ v *int64 }

func (a amountFlag) String() string {
	if a.v == nil || *a.v == 0 {
		return ""
	}
	return strconv.FormatInt(*a.v, 10)
}

func (a amountFlag) Set(s string) error {
	v, err := parseAmount(s)
	if err != nil {
		return err
	}
	*a.v = v
	return nil
}

// amount defines an amount flag on fs, in microcredits.
func amount(fs *flag.FlagSet, name, usage string) *int64 {
	v := new(int64)
	fs.Var(amountFlag{v}, name, usage+`: credits as "2.5cr" or integer microcredits as "2500000"`)
	return v
}

// parseAmount reads an amount of money exactly, without floating point:
// "2.5cr" is 2,500,000 µcr; "2500000" and "2500000ucr" (or "µcr") are
// microcredits. A bare decimal such as "2.5" is refused as ambiguous, as
// are negative amounts, more than six decimals and overflow.
func parseAmount(s string) (int64, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	lower := strings.ToLower(t)
	var credits bool
	switch {
	case strings.HasSuffix(lower, "µcr"):
		t = t[:len(t)-len("µcr")]
	case strings.HasSuffix(lower, "ucr"):
		t = t[:len(t)-len("ucr")]
	case strings.HasSuffix(lower, "cr"):
		t, credits = t[:len(t)-len("cr")], true
	}
	t = strings.TrimSpace(t)
	whole, frac, hasPoint := strings.Cut(t, ".")
	switch {
	case strings.HasPrefix(t, "-"):
		return 0, fmt.Errorf("amount %q is negative", s)
	case hasPoint && !credits:
		return 0, fmt.Errorf("amount %q is ambiguous: write %scr for credits, or an integer number of microcredits", s, t)
	case !digits(whole) || hasPoint && !digits(frac):
		return 0, fmt.Errorf(`amount %q: want credits such as "2.5cr" or integer microcredits such as "2500000"`, s)
	case len(frac) > 6:
		return 0, fmt.Errorf("amount %q has more than six decimals: the smallest amount is 0.000001cr (1 µcr)", s)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	if !credits {
		return w, nil
	}
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	if w > (1<<63-1-f)/market.Credit {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	return w*market.Credit + f, nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// credits formats microcredits as credits, exactly: 2500000 is "2.5 cr".
func credits(µcr int64) string {
	sign := ""
	u := uint64(µcr)
	if µcr < 0 {
		sign, u = "-", uint64(-µcr)
	}
	whole, frac := u/uint64(market.Credit), u%uint64(market.Credit)
	if frac == 0 {
		return fmt.Sprintf("%s%d cr", sign, whole)
	}
	return fmt.Sprintf("%s%d.%s cr", sign, whole, strings.TrimRight(fmt.Sprintf("%06d", frac), "0"))
}

// jsonArg reads a JSON argument given inline or, as "@file", from a file
// ("@-" reads standard input).
func jsonArg(e *env, flagName, s string) (json.RawMessage, error) {
	b := []byte(s)
	if name, ok := strings.CutPrefix(s, "@"); ok {
		var err error
		if name == "-" {
			b, err = io.ReadAll(e.stdin)
		} else {
			b, err = os.ReadFile(name)
		}
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagName, err)
		}
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("--%s: not valid JSON: %.80s", flagName, strings.TrimSpace(string(b)))
	}
	return json.RawMessage(strings.TrimSpace(string(b))), nil
}

// listFlag is a flag that may be repeated; commas also separate values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, splitList(s)...)
	return nil
}

// table writes aligned columns, under a header unless it is empty.
func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if header != "" {
		fmt.Fprintln(tw, header)
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// clock formats a time for people, in the local zone.
func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
