package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentmarket/agentmarket/a2a"
	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/mcpserver"
)

// keyFile writes a new agent key to a file and returns both.
func keyFile(t *testing.T) (string, market.PrivateKey) {
	t.Helper()
	key, err := market.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := key.MarshalText()
	path := filepath.Join(t.TempDir(), "agent.key")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

func register(t *testing.T, url string, key market.PrivateKey, name string, roles ...market.Role) *client.Client {
	t.Helper()
	c := client.New(url, key)
	reg := market.SignRegistration(market.Registration{Name: name, Operator: "op-" + name, Roles: roles}, key, time.Now())
	must[market.Agent](t)(c.Register(t.Context(), reg))
	return c
}

func TestAgentKeygenWritesAUsableKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.key")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"agent", "keygen", "--out", path}, func(string) string { return "" }, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	k, err := readAgentKey(path)
	if err != nil || strings.TrimSpace(out.String()) != string(k.Public().DID()) {
		t.Fatalf("key %v, printed %q", err, out.String())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode())
	}
	if err := run(t.Context(), []string{"agent", "keygen", "--out", path}, func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard); err == nil {
		t.Fatal("keygen overwrote an existing key")
	}
}

func TestMCPOverStdio(t *testing.T) {
	srv := startServe(t, t.TempDir(), "127.0.0.1:0")
	path, key := keyFile(t)
	register(t, srv.URL, key, "mcp-buyer", market.RoleBuyer)

	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	var stderr bytes.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"mcp", "--server", srv.URL, "--key", path}, func(string) string { return "" }, stdinR, stdoutW, &stderr)
		stdoutW.Close()
	}()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, &mcp.IOTransport{Reader: stdoutR, Writer: stdinW}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "balance", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("balance: %v %+v", err, res)
	}
	var bal mcpserver.BalanceOut
	b, _ := json.Marshal(res.StructuredContent)
	json.Unmarshal(b, &bal)
	if bal.Agent != string(key.Public().DID()) || bal.AvailableMicrocredits <= 0 {
		t.Fatalf("balance over stdio: %+v", bal)
	}
	cs.Close()
	stdinW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mcp returned %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("mcp did not stop when the client hung up")
	}
}

func TestMCPRefusesAnUnregisteredKey(t *testing.T) {
	srv := startServe(t, t.TempDir(), "127.0.0.1:0")
	path, _ := keyFile(t)
	err := run(t.Context(), []string{"mcp", "--server", srv.URL, "--key", path}, func(string) string { return "" },
		strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not") {
		t.Fatalf("mcp with an unregistered key = %v, want an error naming the problem", err)
	}
}

func TestMCPTokenIsBoundToTheMarket(t *testing.T) {
	srv := startServe(t, t.TempDir(), "127.0.0.1:0")
	path, key := keyFile(t)
	register(t, srv.URL, key, "token-holder", market.RoleBuyer)
	var out bytes.Buffer
	if err := run(t.Context(), []string{"mcp", "token", "--server", srv.URL, "--key", path, "--ttl", "1h"},
		func(string) string { return "" }, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	mk := must[market.PublicKey](t)(client.New(srv.URL, key).MarketKey(t.Context()))
	id, err := mcpserver.VerifyToken(strings.TrimSpace(out.String()), string(mk.DID()), time.Now())
	if err != nil || id != key.Public().DID() {
		t.Fatalf("token verifies as %q, %v", id, err)
	}
}

// fakeOpenAI is an OpenAI-compatible chat endpoint for the agent command:
// no model API is reachable from here. It awards the first bid it sees
// and accepts the delivery.
func fakeOpenAI(t *testing.T) *httptest.Server {
	bidRE := regexp.MustCompile(`bid_[0-9a-f]{20}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		name, args := "accept", `{"quality":0.9}`
		if strings.Contains(string(body), `"name":"award"`) {
			name, args = "award", fmt.Sprintf(`{"bid_id":%q}`, bidRE.FindString(string(body)))
		}
		json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"finish_reason": "tool_calls",
			"message": map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
				"id": "call_1", "type": "function", "function": map[string]any{"name": name, "arguments": args}}}}}}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAgentRunTradesWithAnLLMBuyer(t *testing.T) {
	srv := startServe(t, t.TempDir(), "127.0.0.1:0")
	sellerKey, _ := keyFile(t)
	buyerKey, _ := keyFile(t)
	model := fakeOpenAI(t)
	card := filepath.Join(t.TempDir(), "card.json")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sellerOut := &syncBuffer{}
	sold := make(chan error, 1)
	go func() {
		sold <- run(ctx, []string{"agent", "run", "--role", "seller", "--policy", "scripted", "--server", srv.URL, "--key", sellerKey,
			"--name", "seller", "--operator", "op-s", "--price", "2000000", "--card", card, "--poll", "50ms"},
			func(string) string { return "" }, strings.NewReader(""), sellerOut, io.Discard)
	}()
	waitFor(t, "the seller's offer", func() bool { return strings.Contains(sellerOut.String(), `"offer"`) })

	env := map[string]string{"OPENAI_API_KEY": "test"}
	var out bytes.Buffer
	err := run(ctx, []string{"agent", "run", "--role", "buyer", "--policy", "llm", "--llm-provider", "openai",
		"--llm-base-url", model.URL + "/v1", "--llm-model", "local", "--server", srv.URL, "--key", buyerKey,
		"--name", "buyer", "--operator", "op-b", "--budget", "5000000", "--poll", "100ms"},
		func(k string) string { return env[k] }, strings.NewReader(""), &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var line struct {
		State  string `json:"state"`
		Review string `json:"review"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line.State != "settled" || line.Review != "accept" {
		t.Fatalf("buyer printed %s (%v), want a settled, accepted contract", out.String(), err)
	}
	cancel()
	if err := <-sold; err != nil {
		t.Fatalf("seller: %v", err)
	}

	raw, err := os.ReadFile(card)
	if err != nil {
		t.Fatal(err)
	}
	var c a2a.AgentCard
	json.Unmarshal(raw, &c)
	var did string
	for _, ext := range c.Capabilities.Extensions {
		did, _ = ext.Params["did"].(string)
	}
	pub, err := market.ParseDID(market.AgentID(did))
	if err != nil {
		t.Fatal(err)
	}
	if err := a2a.Verify(raw, pub); err != nil || len(c.Skills) != 1 {
		t.Fatalf("the seller's card: %v, skills %+v", err, c.Skills)
	}
}

// bearer adds a bearer token to each request, as an MCP client's header
// configuration does.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func TestServeMountsMCP(t *testing.T) {
	srv := startServe(t, t.TempDir(), "127.0.0.1:0")
	path, key := keyFile(t)
	register(t, srv.URL, key, "remote-llm", market.RoleBuyer)

	resp, err := http.Post(srv.URL+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/mcp without a token: %d, want 401", resp.StatusCode)
	}

	var tok bytes.Buffer
	if err := run(t.Context(), []string{"mcp", "token", "--server", srv.URL, "--key", path}, func(string) string { return "" },
		strings.NewReader(""), &tok, io.Discard); err != nil {
		t.Fatal(err)
	}
	transport := &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{strings.TrimSpace(tok.String())}}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "remote", Version: "1"}, nil).Connect(t.Context(), transport, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "balance", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("balance over /mcp: %v %+v", err, res)
	}
	b, _ := json.Marshal(res.StructuredContent)
	if !strings.Contains(string(b), string(key.Public().DID())) {
		t.Fatalf("balance over /mcp is not the token's agent: %s", b)
	}
}
