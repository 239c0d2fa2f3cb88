package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/agentmarket/agentmarket/httpapi"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/mcpserver"
)

// shutdownGrace bounds how long serve waits for requests in flight once
// it is told to stop.
const shutdownGrace = 30 * time.Second

func runServe(ctx context.Context, e *env, args []string) error {
	fs := e.flags("serve")
	addr := fs.String("addr", e.envOr("AGENTMARKET_ADDR", "127.0.0.1:8080"), "address to listen on (env AGENTMARKET_ADDR)")
	data := fs.String("data", e.envOr("AGENTMARKET_DATA", "./agentmarket-data"), "data directory (env AGENTMARKET_DATA)")
	db := fs.String("db", e.getenv("AGENTMARKET_DB"),
		"PostgreSQL URL of the market (env AGENTMARKET_DB): several nodes may share it; empty keeps the market in --data")
	marketKeyPath := fs.String("market-key", e.getenv("AGENTMARKET_MARKET_KEY"),
		"with --db: file holding the key that signs receipts, the same on every node (env AGENTMARKET_MARKET_KEY)")
	opKeyPath := fs.String("operator-key", e.getenv("AGENTMARKET_OPERATOR_KEY"),
		"file holding the operator's private key (env AGENTMARKET_OPERATOR_KEY); default DATA/operator.key, created if absent; required with --db")
	logLevel := fs.String("log-level", e.envOr("AGENTMARKET_LOG_LEVEL", "info"), "debug, info, warn or error (env AGENTMARKET_LOG_LEVEL)")
	rateLimit := fs.String("rate-limit", e.envOr("AGENTMARKET_RATE_LIMIT", "200"), "each agent's sustained requests per second (env AGENTMARKET_RATE_LIMIT)")
	publicURL := fs.String("public-url", e.getenv("AGENTMARKET_PUBLIC_URL"), "the API's public base URL, for the agent card (env AGENTMARKET_PUBLIC_URL); default the request's host")
	maxBody := fs.Int64("max-body", 1<<20, "the largest request body, in bytes")
	tick := fs.Duration("tick", 200*time.Millisecond, "how often the market's deadlines run")
	store := fs.String("store", e.envOr("AGENTMARKET_STORE", storeSQLite), storeUsage+" (env AGENTMARKET_STORE)")
	backupDir := fs.String("backup-dir", e.getenv("AGENTMARKET_BACKUP_DIR"),
		"embedded market: on SIGUSR1, write an online backup into a new directory under this one, named by the time (env AGENTMARKET_BACKUP_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	if *db != "" && (*marketKeyPath == "" || *opKeyPath == "") {
		return errors.New("serve --db: every node of a market needs the same --market-key and --operator-key files; create each once with agentmarket keygen --out FILE")
	}
	if *db != "" && *backupDir != "" {
		return errors.New("serve --backup-dir: only for the embedded market; back up PostgreSQL with pg_dump or base backups (docs/operations.md)")
	}
	if *db == "" && *marketKeyPath != "" {
		return errors.New("serve --market-key: only with --db; the embedded market keeps its key in DATA/market.key")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("serve --log-level %q: want debug, info, warn or error", *logLevel)
	}
	rps, err := strconv.ParseFloat(*rateLimit, 64)
	if err != nil || rps <= 0 {
		return fmt.Errorf("serve --rate-limit %q: want a positive number of requests per second", *rateLimit)
	}
	if *tick <= 0 {
		return fmt.Errorf("serve --tick %s: want a positive duration", *tick)
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))

	// The engine draws ids from its seeded source: a restarted node, or
	// another node on the same database, must not repeat its sequence.
	so, where := stackOptions{Logger: log, Seed: rand.Uint64(), Store: *store}, *data
	if *db != "" {
		so.DB, where = *db, databaseName(*db)
		if so.MarketKey, err = readAgentKey(*marketKeyPath); err != nil {
			return fmt.Errorf("market key: %w", err)
		}
	}
	st, err := openStack(ctx, *data, so)
	if err != nil {
		return fmt.Errorf("open market in %s: %w", where, err)
	}
	// The store and the ledger close last, after the server and the
	// deadlines have stopped using them: closing the ledger makes it
	// durable.
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("serve: close market", "err", err)
		}
	}()

	opKey, opPath, created, err := operatorKey(*opKeyPath, *data)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(e.stdout, "agentmarket: generated the operator key in %s (%s)\n", opPath, opKey.Public().DID())
	} else {
		fmt.Fprintf(e.stdout, "agentmarket: operator key %s (%s)\n", opPath, opKey.Public().DID())
	}
	if *db != "" {
		if err := pinKeys(ctx, st.Store, st.Key.Public(), opKey.Public(), time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "agentmarket: market in %s, market key %s (%s)\n", where, *marketKeyPath, st.Key.Public().DID())
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	closing := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/", httpapi.NewServer(httpapi.Config{
		Service:      st.Engine,
		Store:        st.Store,
		Operator:     opKey.Public(),
		Logger:       log,
		MaxBodyBytes: *maxBody,
		RateLimit:    rate.Limit(rps),
		PublicURL:    *publicURL,
		MarketKey:    st.Key,
		Closing:      closing,
	}))
	// MCP clients authenticate with a bearer token from "agentmarket mcp
	// token", signed by the agent's key and bound to this market's key.
	mux.Handle("/mcp", mcpserver.Handler(st.Engine,
		mcpserver.BearerAuthenticator(string(st.Key.Public().DID()), time.Now), &mcpserver.Options{Logger: log}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Event streams and long polls extend their own write deadlines.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(func() { close(closing) })

	tickCtx, stopTicks := context.WithCancel(context.WithoutCancel(ctx))
	var ticks sync.WaitGroup
	ticks.Add(1)
	go func() {
		defer ticks.Done()
		runDeadlines(tickCtx, st, *tick, log)
	}()
	defer func() {
		stopTicks()
		ticks.Wait()
	}()

	if *backupDir != "" {
		// Registered before the server listens, so that a SIGUSR1 sent
		// once it answers is never the default action (exit).
		stopBackups := backupOnSignal(ctx, e, st, *data, *backupDir, cmp.Or(*store, storeSQLite), log)
		defer stopBackups()
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(e.stdout, "agentmarket: listening on http://%s\n", ln.Addr())
	log.Info("serve: listening", "addr", ln.Addr().String(), "market", where)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("serve: shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("serve: requests still running after %s: %w", shutdownGrace, err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// backupOnSignal writes an online backup of the running embedded market
// into a new directory under dir each time the process gets SIGUSR1: the
// store through its Backup, then the ledger's journal and the keys, as
// "agentmarket backup" does for a stopped market. The journal copy may
// end in a record cut short, which opening the copy drops. It returns a
// function that stops listening and waits for a backup in progress.
func backupOnSignal(ctx context.Context, e *env, st *stack, data, dir, kind string, log *slog.Logger) (stop func()) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-bctx.Done():
				return
			case <-usr1:
			}
			start := time.Now()
			to := filepath.Join(dir, start.UTC().Format("20060102T150405.000000000Z"))
			err := emptyDir(to)
			if err == nil {
				err = copyMarket(bctx, st, data, to, kind)
			}
			if err != nil {
				log.Error("serve: backup failed", "dir", to, "err", err)
				fmt.Fprintf(e.stdout, "agentmarket: backup to %s failed: %v\n", to, err)
				continue
			}
			log.Info("serve: backup written", "dir", to, "took", time.Since(start))
			fmt.Fprintf(e.stdout, "agentmarket: backup written to %s\n", to)
		}
	}()
	return func() {
		signal.Stop(usr1)
		cancel()
		<-done
	}
}

// runDeadlines runs the engine's deadlines every interval until ctx ends.
// The ledger expires its own pending transfers on its timer.
func runDeadlines(ctx context.Context, st *stack, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := st.Engine.Tick(ctx); err != nil && ctx.Err() == nil {
				log.Error("serve: deadlines", "err", err)
			}
		}
	}
}

// operatorKey reads the operator's key from path; with no path, from
// DATA/operator.key, which it creates on first start. It reports the path
// and whether it created the key.
func operatorKey(path, data string) (market.PrivateKey, string, bool, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return market.PrivateKey{}, path, false, fmt.Errorf("read operator key: %w", err)
		}
		var k market.PrivateKey
		if err := k.UnmarshalText(b); err != nil {
			return k, path, false, fmt.Errorf("operator key %s: %w", path, err)
		}
		return k, path, false, nil
	}
	path = filepath.Join(data, "operator.key")
	_, statErr := os.Stat(path)
	k, err := loadOrCreateKey(path)
	if err != nil {
		return k, path, false, fmt.Errorf("operator key: %w", err)
	}
	return k, path, errors.Is(statErr, os.ErrNotExist), nil
}
