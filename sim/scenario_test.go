package sim_test

import (
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/sim"
)

func TestAdversarial(t *testing.T) {
	res := MustRun(t, sim.Config{Scenario: "adversarial", Agents: 40, Seed: 3, Duration: 80 * time.Second})
	m := res.Metrics
	attacks := map[string]sim.Attack{}
	for _, a := range m.Attacks {
		attacks[a.Name] = a
	}
	t.Run("NoAttackStealsCredits", func(t *testing.T) {
		if m.StolenMicrocredits != 0 {
			t.Errorf("attacks stole %d µcr: %+v", m.StolenMicrocredits, m.Attacks)
		}
		for _, a := range m.Attacks {
			if a.GainedMicrocredits > 0 {
				t.Errorf("%s gained %d µcr", a.Name, a.GainedMicrocredits)
			}
		}
	})
	t.Run("InjectionsWereTriedAndChangedNoAmount", func(t *testing.T) {
		a := attacks[sim.AttackInjection]
		if a.Attempts == 0 || a.Blocked != a.Attempts {
			t.Errorf("injection %+v: want attempts, all blocked", a)
		}
	})
	t.Run("SybilRingOfThreeGainsNoReputation", func(t *testing.T) {
		a, ok := attacks[sim.AttackSybil+" (3)"]
		if !ok || a.ReputationGain == nil || a.Attempts == 0 {
			t.Fatalf("no sybil ring (3) in the report: %+v", a)
		}
		if *a.ReputationGain > 0.05 {
			t.Errorf("a ring of three gained %.3f reputation from %d wash trades", *a.ReputationGain, a.Attempts)
		}
	})
	t.Run("FreeRidersEndBelowHonestBuyers", func(t *testing.T) {
		r := m.Reputation
		if attacks[sim.AttackFreeRide].Attempts == 0 {
			t.Fatal("the free-riders disputed nothing")
		}
		if !(r.FreeRiderBuyerScore < r.HonestBuyerScore) {
			t.Errorf("free-riders' buyer score %.3f, honest buyers' %.3f", r.FreeRiderBuyerScore, r.HonestBuyerScore)
		}
	})
	t.Run("MandatesStopOverspending", func(t *testing.T) {
		a := attacks[sim.AttackOverspend]
		if a.Attempts == 0 || a.Blocked != a.Attempts {
			t.Errorf("overspending %+v: want every attempt refused", a)
		}
	})
	t.Run("ReplayAndForgeryDoNotApplyInProcess", func(t *testing.T) {
		for _, name := range []string{sim.AttackReplay, sim.AttackForgery} {
			if a, ok := attacks[name]; !ok || a.Applicable {
				t.Errorf("%s: %+v", name, a)
			}
		}
	})
}

func TestBaselineWelfareAndReputation(t *testing.T) {
	res := MustRun(t, sim.Config{Scenario: "baseline", Agents: 24, Seed: 2, Duration: 150 * time.Second})
	m := res.Metrics
	// Thresholds for a run of a few hundred contracts; the full-size
	// figures are measured by agentmarket sim and reported in docs.
	if m.Volume.Settled < 80 {
		t.Fatalf("only %d contracts settled", m.Volume.Settled)
	}
	// The optimum is an expected value, so a small run can beat it by luck.
	if m.Welfare.Ratio < 0.8 || m.Welfare.Ratio > 1.1 {
		t.Errorf("welfare %.3f of the optimum, want between 0.8 and 1.1", m.Welfare.Ratio)
	}
	if m.Reputation.Sellers < 4 || m.Reputation.Spearman < 0.5 {
		t.Errorf("reputation ρ %.3f over %d sellers, want at least 0.5 over 4 or more", m.Reputation.Spearman, m.Reputation.Sellers)
	}
	if len(m.Attacks) != 0 || m.StolenMicrocredits != 0 {
		t.Errorf("attacks in an honest market: %+v", m.Attacks)
	}
}

func TestDemandSpike(t *testing.T) {
	res := MustRun(t, sim.Config{Scenario: "demand-spike", Agents: 24, Seed: 1, Duration: 5 * time.Minute})
	sp := res.Metrics.Spike
	if sp == nil {
		t.Fatal("no spike section")
	}
	rose := false
	for _, si := range sp.Intents {
		rose = rose || si.Rose
	}
	if !rose {
		t.Errorf("no price index rose after the spike: %+v", sp.Intents)
	}
	after := 0
	for _, e := range sp.Entries {
		if e.T > sp.AtSeconds {
			after++
		}
	}
	if after == 0 {
		t.Errorf("no entrant joined after the spike: %+v", sp.Entries)
	}
}
