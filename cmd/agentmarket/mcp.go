package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/mcpserver"
)

// runMCP serves the MCP tools over stdio for one agent, through the Go SDK
// against a running market; "mcp token" prints a bearer token for serve's
// /mcp endpoint instead.
func runMCP(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "token" {
		return runMCPToken(ctx, e, args[1:])
	}
	fs := e.flags("mcp")
	server := fs.String("server", e.envOr("AGENTMARKET_SERVER", "http://127.0.0.1:8080"), "the market's base URL (env AGENTMARKET_SERVER)")
	keyPath := fs.String("key", e.getenv("AGENTMARKET_KEY"), "file holding the agent's private key (env AGENTMARKET_KEY)")
	logLevel := fs.String("log-level", "warn", "log level on stderr: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("mcp takes no arguments, got %q (did you mean mcp token?)", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("mcp --log-level %q: want debug, info, warn or error", *logLevel)
	}
	key, err := readAgentKey(*keyPath)
	if err != nil {
		return err
	}
	cl := client.New(*server, key)
	// A wrong URL or an unregistered key shows now, not at the model's
	// first tool call.
	if _, err := cl.Agent(ctx, cl.ID()); err != nil {
		return fmt.Errorf("mcp: agent %s at %s: %w", cl.ID(), *server, err)
	}
	// Stdout carries only the protocol; logs go to stderr.
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	srv := mcpserver.New(cl, cl.ID(), &mcpserver.Options{Logger: log})
	err = srv.Run(ctx, &mcp.IOTransport{Reader: io.NopCloser(e.stdin), Writer: nopWriteCloser{e.stdout}})
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil // the client hung up, or we were told to stop
	}
	return fmt.Errorf("mcp: %w", err)
}

// runMCPToken prints a bearer token with which an MCP client acts as the
// agent at serve's /mcp endpoint. The token is signed by the agent's own
// key and bound to the market's key, so it is worthless elsewhere.
func runMCPToken(ctx context.Context, e *env, args []string) error {
	fs := e.flags("mcp token")
	server := fs.String("server", e.envOr("AGENTMARKET_SERVER", "http://127.0.0.1:8080"), "the market's base URL (env AGENTMARKET_SERVER)")
	keyPath := fs.String("key", e.getenv("AGENTMARKET_KEY"), "file holding the agent's private key (env AGENTMARKET_KEY)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid (at most 720h)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, err := readAgentKey(*keyPath)
	if err != nil {
		return err
	}
	mk, err := client.New(*server, key).MarketKey(ctx)
	if err != nil {
		return fmt.Errorf("mcp token: market key from %s: %w", *server, err)
	}
	tok, err := mcpserver.IssueToken(key, string(mk.DID()), time.Now(), *ttl)
	if err != nil {
		return fmt.Errorf("mcp token: %w", err)
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}

// nopWriteCloser lets the command's stdout serve as a transport's writer
// without the transport closing it.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
