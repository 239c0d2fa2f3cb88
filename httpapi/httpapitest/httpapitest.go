// Package httpapitest runs a real market behind the HTTP API, for tests
// and examples: the engine on a ledger journal and a SQLite file in a
// directory, served by httpapi on a loopback port, with its deadlines
// ticking. Nothing in it is a mock.
package httpapitest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/httpapi"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sqlite"
)

// Options tune a Market; the zero value is ready to use.
type Options struct {
	// Engine adjusts the engine's configuration. By default random audits
	// and cross-checks are off, so that runs are repeatable.
	Engine func(*engine.Config)
	// API adjusts the HTTP server's configuration.
	API func(*httpapi.Config)
	// Service, when set, wraps the engine before the server gets it: a
	// test's decorator that delays or fails calls at the outer edge.
	Service func(market.Service) market.Service
	// Tick is how often deadlines run. Default 20 ms.
	Tick time.Duration
}

// Market is a running market served over HTTP on 127.0.0.1.
type Market struct {
	// URL is the server's base URL, such as "http://127.0.0.1:41234".
	URL string
	// Handler is the API's handler, for tests that call it in-process.
	Handler http.Handler
	// Operator signs as the market operator.
	Operator market.PrivateKey
	Engine   *engine.Engine
	Ledger   *ledger.Ledger
	Store    *sqlite.Store

	server  *httptest.Server
	closing chan struct{}
	stop    chan struct{}
	ticks   sync.WaitGroup
	once    sync.Once
}

// Start opens (or creates) a market in dir and serves it.
func Start(dir string, o Options) (*Market, error) {
	if o.Tick <= 0 {
		o.Tick = 20 * time.Millisecond
	}
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{ExpiryInterval: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	s, err := sqlite.Open(filepath.Join(dir, "market.db"), sqlite.Options{})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	seed := make([]byte, 32)
	seed[0] = 0x4d
	key, err := market.NewPrivateKeyFromSeed(seed)
	if err != nil {
		return nil, err
	}
	ecfg := engine.Config{Store: s, Ledger: l, Key: key, Seed: 1, SampleRate: -1, CrossCheckRate: -1}
	if o.Engine != nil {
		o.Engine(&ecfg)
	}
	e, err := engine.New(context.Background(), ecfg)
	if err != nil {
		s.Close()
		l.Close()
		return nil, fmt.Errorf("start engine: %w", err)
	}
	seed[0] = 0x0b
	op, err := market.NewPrivateKeyFromSeed(seed)
	if err != nil {
		return nil, err
	}
	m := &Market{Operator: op, Engine: e, Ledger: l, Store: s, closing: make(chan struct{}), stop: make(chan struct{})}
	var svc market.Service = e
	if o.Service != nil {
		svc = o.Service(e)
	}
	acfg := httpapi.Config{Service: svc, Store: s, Operator: op.Public(), Closing: m.closing}
	if o.API != nil {
		o.API(&acfg)
	}
	m.Handler = httpapi.NewServer(acfg)
	m.server = httptest.NewServer(m.Handler)
	m.URL = m.server.URL
	m.ticks.Add(1)
	go m.tick(o.Tick)
	return m, nil
}

// New starts a market in a temporary directory and closes it when the
// test ends.
func New(tb testing.TB, o Options) *Market {
	tb.Helper()
	m, err := Start(tb.TempDir(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Error(err)
		}
	})
	return m
}

func (m *Market) tick(every time.Duration) {
	defer m.ticks.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			m.Engine.Tick(context.Background())
		case <-m.stop:
			return
		}
	}
}

// Close stops the server, ending event streams, then the deadlines, and
// closes the store and the ledger.
func (m *Market) Close() error {
	var err error
	m.once.Do(func() {
		close(m.closing)
		m.server.Close()
		close(m.stop)
		m.ticks.Wait()
		err = errors.Join(m.Store.Close(), m.Ledger.Close())
	})
	return err
}

// CheckMoney returns an error if the ledger's invariants do not hold:
// conservation, no negative wallet, pending counters that match the holds.
func (m *Market) CheckMoney() error {
	return m.Ledger.CheckInvariants(context.Background())
}
