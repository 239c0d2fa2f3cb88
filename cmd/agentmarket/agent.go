package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/a2a"
	"github.com/agentmarket/agentmarket/agent"
	"github.com/agentmarket/agentmarket/agent/llm"
	"github.com/agentmarket/agentmarket/checker"
	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/market"
)

// runAgent runs one agent against a market: "agent run" trades with a
// scripted or LLM policy; "agent keygen" writes a new agent key.
func runAgent(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "keygen" {
		return runKeygen(e, args[1:])
	}
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(e.stderr, "usage: agentmarket agent run --role buyer|seller --policy scripted|llm [flags]\n       agentmarket agent keygen --out FILE")
		return errors.New("agent: want the subcommand run or keygen")
	}
	fs := e.flags("agent run")
	server := fs.String("server", e.envOr("AGENTMARKET_SERVER", "http://127.0.0.1:8080"), "the market's base URL (env AGENTMARKET_SERVER)")
	keyPath := fs.String("key", e.getenv("AGENTMARKET_KEY"), "file holding the agent's private key (env AGENTMARKET_KEY)")
	name := fs.String("name", "", "register the agent under this name first, if it is not registered")
	operator := fs.String("operator", "", "the operator to declare when registering")
	role := fs.String("role", "buyer", "buyer or seller")
	policy := fs.String("policy", "scripted", "scripted or llm")
	provider := fs.String("llm-provider", e.envOr("AGENTMARKET_LLM_PROVIDER", "anthropic"), "anthropic or openai (any OpenAI-compatible endpoint) (env AGENTMARKET_LLM_PROVIDER)")
	baseURL := fs.String("llm-base-url", e.getenv("AGENTMARKET_LLM_BASE_URL"), "the model API's base URL; required for openai, such as http://127.0.0.1:8080/v1 (env AGENTMARKET_LLM_BASE_URL)")
	model := fs.String("llm-model", e.getenv("AGENTMARKET_LLM_MODEL"), "the model name (env AGENTMARKET_LLM_MODEL)")
	intent := fs.String("intent", "SORT_LIST", "the intent type to buy or sell")
	params := fs.String("params", `{"items":[5,3,9,1]}`, "buyer: the task's parameters, JSON")
	budget := fs.Int64("budget", 5*market.Credit, "buyer: the most to pay, in microcredits")
	acceptance := fs.String("acceptance", market.AcceptBuyer, "buyer: buyer_review, checker, schema, digest or arbiter")
	checkerName := fs.String("checker", "sort", "the built-in task: the buyer verifies deliveries with its checker, the seller solves with its solver; empty for none")
	count := fs.Int("count", 1, "buyer: how many tasks to buy")
	price := fs.Int64("price", 2*market.Credit, "seller: the offer's base price, in microcredits")
	floor := fs.Int64("floor", 0, "seller: the least to accept, in microcredits; default the price")
	latency := fs.Int64("latency-ms", 60_000, "seller: the promised latency")
	duration := fs.Duration("duration", 0, "seller: how long to serve; 0 until interrupted")
	cardPath := fs.String("card", "", "seller: write the agent's signed A2A card to this file")
	poll := fs.Duration("poll", 500*time.Millisecond, "how often to look at the market")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	key, err := readAgentKey(*keyPath)
	if err != nil {
		return err
	}
	var pol agent.Policy
	switch *policy {
	case "scripted":
		pol = agent.Scripted{}
	case "llm":
		m, err := newModel(e, *provider, *baseURL, *model)
		if err != nil {
			return err
		}
		pol = agent.NewLLM(m)
	default:
		return fmt.Errorf("agent run --policy %q: want scripted or llm", *policy)
	}
	cl := client.New(*server, key)
	if *name != "" {
		reg := market.SignRegistration(market.Registration{Name: *name, Operator: *operator, Roles: []market.Role{market.Role(*role)}}, key, time.Now())
		if _, err := cl.Register(ctx, reg); err != nil && !market.Is(err, market.Exist) {
			return fmt.Errorf("agent run: register: %w", err)
		}
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tr := &agent.Trader{Svc: cl, ID: cl.ID(), Policy: pol, Poll: *poll, Log: log}
	out := json.NewEncoder(e.stdout)

	switch *role {
	case "buyer":
		o := agent.Order{Intent: *intent, Parameters: json.RawMessage(*params), BudgetMicrocredits: *budget,
			Acceptance: market.Acceptance{Policy: *acceptance}, Checker: *checkerName}
		if *acceptance == market.AcceptChecker {
			o.Acceptance.Checker = *checkerName
		}
		if !json.Valid(o.Parameters) {
			return fmt.Errorf("agent run --params: not JSON: %s", *params)
		}
		for i := range *count {
			o.RequestID = fmt.Sprintf("agent-%d-%d", time.Now().UnixNano(), i)
			res, err := tr.Buy(ctx, o)
			line := map[string]any{"intent": res.Intent.ID, "stats": tr.Stats()}
			if res.Contract != nil {
				line["contract"], line["state"], line["price_microcredits"] = res.Contract.ID, res.Contract.State, res.Contract.PriceMicrocredits
			}
			if res.Reviewed != nil {
				line["review"] = res.Reviewed.Action
			}
			if err != nil {
				line["error"] = err.Error()
			}
			out.Encode(line)
			if err != nil && ctx.Err() != nil {
				return nil
			}
		}
		return nil
	case "seller":
		offer, err := cl.PublishOffer(ctx, market.Offer{Intent: *intent, BasePriceMicrocredits: *price, LatencyMs: *latency})
		if err != nil {
			return fmt.Errorf("agent run: publish offer: %w", err)
		}
		if *floor > 0 {
			tr.Floor = func(market.Intent, market.Offer) int64 { return *floor }
		}
		if *checkerName != "" {
			tr.Work = func(_ context.Context, in market.Intent) (json.RawMessage, error) {
				out, _, err := checker.Solve(*checkerName, in.Parameters)
				return out, err
			}
		}
		out.Encode(map[string]any{"offer": offer.ID, "seller": cl.ID()})
		if *cardPath != "" {
			if err := writeCard(ctx, cl, key, *server, offer, *cardPath); err != nil {
				return err
			}
		}
		sctx := ctx
		if *duration > 0 {
			var cancel context.CancelFunc
			sctx, cancel = context.WithTimeout(ctx, *duration)
			defer cancel()
		}
		err = tr.Sell(sctx, []market.Offer{offer})
		out.Encode(map[string]any{"seller": cl.ID(), "stats": tr.Stats()})
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return err
	}
	return fmt.Errorf("agent run --role %q: want buyer or seller", *role)
}

// newModel builds the LLM policy's model backend. Keys come from the
// environment only, so that they never sit in a process listing.
func newModel(e *env, provider, baseURL, model string) (agent.Model, error) {
	switch strings.ToLower(provider) {
	case "anthropic":
		return llm.NewAnthropic(llm.AnthropicOptions{APIKey: e.getenv("ANTHROPIC_API_KEY"), Model: model, BaseURL: baseURL})
	case "openai":
		return llm.NewOpenAI(llm.OpenAIOptions{APIKey: e.getenv("OPENAI_API_KEY"), Model: model, BaseURL: baseURL})
	}
	return nil, fmt.Errorf("--llm-provider %q: want anthropic or openai", provider)
}

// writeCard writes the seller's signed A2A card to path.
func writeCard(ctx context.Context, cl *client.Client, key market.PrivateKey, server string, offer market.Offer, path string) error {
	a, err := cl.Agent(ctx, cl.ID())
	if err != nil {
		return fmt.Errorf("agent card: %w", err)
	}
	mk, err := cl.MarketKey(ctx)
	if err != nil {
		return fmt.Errorf("agent card: market key: %w", err)
	}
	card, err := a2a.Sign(a2a.ForAgent(a, []market.Offer{offer}, strings.TrimRight(server, "/"), mk.DID()), key)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(card, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("agent card: %w", err)
	}
	return nil
}

// runKeygen writes a new agent key to a file (mode 0600) and prints the
// agent's did:key.
func runKeygen(e *env, args []string) error {
	fs := e.flags("agent keygen")
	out := fs.String("out", "agent.key", "the key file to create; it must not exist")
	if err := fs.Parse(args); err != nil {
		return err
	}
	k, err := market.GenerateKey(nil)
	if err != nil {
		return err
	}
	text, err := k.MarshalText()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("agent keygen: %w", err)
	}
	if _, err := f.Write(append(text, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("agent keygen: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("agent keygen: %w", err)
	}
	fmt.Fprintln(e.stdout, k.Public().DID())
	return nil
}

// readAgentKey reads an agent's private key file, as MarshalText writes it.
func readAgentKey(path string) (market.PrivateKey, error) {
	if path == "" {
		return market.PrivateKey{}, errors.New("--key is required: a file holding the agent's private key (ed25519-priv:...)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return market.PrivateKey{}, fmt.Errorf("read key: %w", err)
	}
	var k market.PrivateKey
	if err := k.UnmarshalText(b); err != nil {
		return k, fmt.Errorf("key %s: %w", path, err)
	}
	return k, nil
}
