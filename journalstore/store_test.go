package journalstore_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/storetest"
)

// MustOpen opens a store in dir and closes it when the test ends.
func MustOpen(tb testing.TB, dir string, opts journalstore.Options) *journalstore.Store {
	tb.Helper()
	s, err := journalstore.Open(dir, opts)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) market.Store {
		return MustOpen(t, t.TempDir(), journalstore.Options{})
	})
}

func TestConformanceWithoutGroupCommit(t *testing.T) {
	storetest.Run(t, func(t *testing.T) market.Store {
		return MustOpen(t, t.TempDir(), journalstore.Options{MaxBatch: 1})
	})
}

// archiveAll keeps as little as it can in memory, so that reads go to the
// archive wherever they can.
var archiveAll = journalstore.Options{HotObjects: 1, HotEvents: 1}

func TestConformanceArchivingEverything(t *testing.T) {
	storetest.Run(t, func(t *testing.T) market.Store {
		return MustOpen(t, t.TempDir(), archiveAll)
	})
}

func TestConformanceWithClashingIDs(t *testing.T) {
	defer journalstore.WeakIDHash()()
	storetest.Run(t, func(t *testing.T) market.Store {
		return MustOpen(t, t.TempDir(), archiveAll)
	})
}

// TestImportsOnlyTheDomain keeps the adapter an adapter: besides the
// standard library it builds on market alone, never on another adapter,
// a driver or a transport.
func TestImportsOnlyTheDomain(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/agentmarket/agentmarket/market" && p != "github.com/agentmarket/agentmarket/journalstore" {
			t.Errorf("journalstore imports %s", p)
		}
	}
	out, err = exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "net/http" || p == "database/sql" {
			t.Errorf("journalstore imports %s", p)
		}
	}
}
