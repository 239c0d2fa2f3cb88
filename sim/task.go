package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/checker"
	"github.com/agentmarket/agentmarket/market"
)

// kind is a type of task: an intent type, how its work is verified, and
// the reference economics from which every seller's true cost and speed
// are drawn.
type kind struct {
	Intent string
	// Checker names the built-in checker that verifies a delivery; empty
	// for a fuzzy task, which a buyer or an arbiter judges.
	Checker string
	// MinSize and MaxSize bound the size passed to checker.Generate, or
	// the word count of a fuzzy task.
	MinSize, MaxSize int
	// UnitCost is the reference true cost of one unit of work, and
	// Overhead of taking a task at all, in microcredits.
	UnitCost, Overhead int64
	// UnitMs is the reference time one unit of work takes, in virtual
	// milliseconds.
	UnitMs float64
	// Project marks a whole project, made of checked parts.
	Project bool
}

// fuzzy reports whether the task's quality is judged rather than checked.
func (k *kind) fuzzy() bool { return k.Checker == "" && !k.Project }

// variant returns a copy of k traded under another intent type, so that a
// large market can be split into many segments of the same work.
func (k *kind) variant(intent string) *kind {
	v := *k
	v.Intent = intent
	return &v
}

// policy is the acceptance policy a buyer asks for.
func (k *kind) policy() market.Acceptance {
	if k.Checker == "" {
		// Prose and whole projects: the buyer reviews, an arbiter decides disputes.
		return market.Acceptance{Policy: market.AcceptBuyer}
	}
	return market.Acceptance{Policy: market.AcceptChecker, Checker: k.Checker}
}

// The task kinds. Sizes keep one task's real work to a millisecond or so,
// so that a run's wall time goes to the market rather than to the work.
var (
	kindSort      = &kind{Intent: "SORT", Checker: "sort", MinSize: 60, MaxSize: 240, UnitCost: 600, Overhead: 100_000, UnitMs: 4}
	kindFactor    = &kind{Intent: "FACTOR", Checker: "factor", MinSize: 36, MaxSize: 44, UnitCost: 400, Overhead: 100_000, UnitMs: 3}
	kindPow       = &kind{Intent: "POW", Checker: "pow", MinSize: 8, MaxSize: 11, UnitCost: 500, Overhead: 100_000, UnitMs: 2}
	kindMatmul    = &kind{Intent: "MATMUL", Checker: "matmul", MinSize: 6, MaxSize: 12, UnitCost: 700, Overhead: 100_000, UnitMs: 4}
	kindTranslate = &kind{Intent: "TRANSLATE", MinSize: 300, MaxSize: 1200, UnitCost: 900, Overhead: 150_000, UnitMs: 8}
	kindSummarize = &kind{Intent: "SUMMARIZE", MinSize: 1000, MaxSize: 4000, UnitCost: 250, Overhead: 100_000, UnitMs: 2}
	kindProject   = &kind{Intent: "PROJECT", MinSize: 2, MaxSize: 4, Overhead: 200_000, Project: true}
)

// allKinds lists the market's task kinds in a fixed order.
var allKinds = []*kind{kindSort, kindFactor, kindPow, kindMatmul, kindTranslate, kindSummarize, kindProject}

// kindByIntent finds one of the standard kinds.
func kindByIntent(intent string) *kind {
	for _, k := range allKinds {
		if k.Intent == intent {
			return k
		}
	}
	return nil
}

// task is one piece of work a buyer wants done, with the truth the market
// never sees: its value to the buyer and the work it really takes.
type task struct {
	seq    int
	kind   *kind
	params json.RawMessage
	// value is what the task is worth to its buyer done at quality 1.
	value int64
	buyer *agentBase
	// honest marks a task of an honest buyer: only those count in welfare.
	honest bool
	// parts are a project's subtasks; parent is the project a subtask
	// belongs to, whose welfare account its costs go to.
	parts  []*task
	parent *task
	// postedAt is when the task was first posted.
	postedAt time.Time

	once sync.Once
	out  json.RawMessage // a correct output, for a checked task
	work int64           // the true work: solver units, or words
	err  error

	// Settlement truth, kept by the world.
	attempts int
	done     bool
	realised int64 // value realised: value × true quality when paid
}

// solve does the task's real work once, whoever needs it first: the
// seller that wins it, or the world measuring the optimum.
func (t *task) solve() (json.RawMessage, int64, error) {
	t.once.Do(func() {
		switch {
		case t.kind.Project:
			for _, p := range t.parts {
				_, w, err := p.solve()
				if err != nil {
					t.err = err
				}
				t.work += w
			}
		case t.kind.fuzzy():
			t.work = int64(wordCount(t.params))
		default:
			t.out, t.work, t.err = checker.Solve(t.kind.Checker, t.params)
		}
	})
	return t.out, t.work, t.err
}

// release drops a done task's parameters and answer, which nothing needs
// once it is paid for, so that a long run's memory grows with its tasks'
// accounts, not with their data. Its work is kept, measured first.
func (t *task) release() {
	if t.kind.Project || t.parent != nil {
		return // a project's parts are read until the project settles
	}
	t.solve()
	t.params, t.out = nil, nil
}

// newTask generates a task of kind k with the buyer's randomness.
func newTask(seq int, k *kind, rng *rand.Rand) (*task, error) {
	t := &task{seq: seq, kind: k}
	size := k.MinSize + rng.IntN(k.MaxSize-k.MinSize+1)
	switch {
	case k.Project:
		sub := []*kind{kindSort, kindMatmul, kindPow, kindFactor}
		var specs []map[string]any
		for i := 0; i < size; i++ {
			pk := sub[rng.IntN(len(sub))]
			p, err := newTask(seq*16+i, pk, rng)
			if err != nil {
				return nil, err
			}
			t.parts = append(t.parts, p)
			specs = append(specs, map[string]any{"intent": pk.Intent, "parameters": p.params})
		}
		b, err := json.Marshal(map[string]any{"project": fmt.Sprintf("p-%d", seq), "parts": specs})
		if err != nil {
			return nil, err
		}
		t.params = b
	case k.fuzzy():
		b, err := json.Marshal(map[string]any{"doc": fmt.Sprintf("doc-%d", seq), "word_count": size,
			"source_lang": "en", "target_lang": [...]string{"ja", "de", "fr", "pt"}[rng.IntN(4)]})
		if err != nil {
			return nil, err
		}
		t.params = b
	default:
		p, err := checker.Generate(k.Checker, rng, size)
		if err != nil {
			return nil, err
		}
		t.params = p
	}
	return t, nil
}

// estimateWork is what a seller expects a task to take, from its public
// parameters alone: exact for sorting, matrices and text, the expected
// value for proof-of-work and factoring.
func estimateWork(k *kind, params json.RawMessage) int64 {
	if k.Project {
		var p struct {
			Parts []struct {
				Intent     string          `json:"intent"`
				Parameters json.RawMessage `json:"parameters"`
			} `json:"parts"`
		}
		if json.Unmarshal(params, &p) != nil {
			return 0
		}
		var w int64
		for _, part := range p.Parts {
			if pk := kindByIntent(part.Intent); pk != nil && !pk.Project {
				w += estimateWork(pk, part.Parameters)
			}
		}
		return w
	}
	switch k.Checker {
	case "sort":
		var p struct {
			Items []json.RawMessage `json:"items"`
		}
		if json.Unmarshal(params, &p) != nil {
			return 0
		}
		n := int64(len(p.Items))
		if n == 0 {
			return 0
		}
		return n * int64(bits.Len(uint(n-1)))
	case "matmul":
		var p struct {
			A [][]json.RawMessage `json:"a"`
			B [][]json.RawMessage `json:"b"`
		}
		if json.Unmarshal(params, &p) != nil || len(p.A) == 0 || len(p.B) == 0 {
			return 0
		}
		return int64(len(p.A)) * int64(len(p.B)) * int64(len(p.B[0]))
	case "pow":
		var p struct {
			Difficulty int `json:"difficulty"`
		}
		if json.Unmarshal(params, &p) != nil {
			return 0
		}
		return int64(1) << min(max(p.Difficulty, 0), 40)
	case "factor":
		var p struct {
			N string `json:"n"`
		}
		if json.Unmarshal(params, &p) != nil {
			return 0
		}
		n, ok := new(big.Int).SetString(p.N, 10)
		if !ok {
			return 0
		}
		// Pollard's rho takes about 2^(bits/4) steps, plus the trial divisions.
		return int64(1.4*math.Exp2(float64(n.BitLen())/4)) + 60
	}
	return int64(wordCount(params))
}

func wordCount(params json.RawMessage) int {
	var p struct {
		Words int `json:"word_count"`
	}
	json.Unmarshal(params, &p)
	return p.Words
}

// projectParts reads a project's subtasks from its parameters.
func projectParts(params json.RawMessage) ([]*kind, []json.RawMessage) {
	var p struct {
		Parts []struct {
			Intent     string          `json:"intent"`
			Parameters json.RawMessage `json:"parameters"`
		} `json:"parts"`
	}
	if json.Unmarshal(params, &p) != nil {
		return nil, nil
	}
	var ks []*kind
	var ps []json.RawMessage
	for _, part := range p.Parts {
		if k := kindByIntent(part.Intent); k != nil && !k.fuzzy() && !k.Project {
			ks = append(ks, k)
			ps = append(ps, part.Parameters)
		}
	}
	return ks, ps
}

// corrupt returns a wrong answer close to a right one: what a seller's
// mistake looks like to the checker.
func corrupt(k *kind, out json.RawMessage) json.RawMessage {
	switch k.Checker {
	case "sort":
		var o struct {
			Items []int64 `json:"items"`
		}
		if json.Unmarshal(out, &o) == nil && len(o.Items) >= 2 {
			o.Items[0], o.Items[len(o.Items)-1] = o.Items[len(o.Items)-1], o.Items[0]
			if o.Items[0] == o.Items[len(o.Items)-1] {
				o.Items = o.Items[1:]
			}
			b, _ := json.Marshal(o)
			return b
		}
	case "factor":
		var o struct {
			Factors []string `json:"factors"`
		}
		if json.Unmarshal(out, &o) == nil && len(o.Factors) > 1 {
			o.Factors = o.Factors[1:]
			b, _ := json.Marshal(o)
			return b
		}
	case "pow":
		var o struct {
			Nonce uint64 `json:"nonce"`
		}
		if json.Unmarshal(out, &o) == nil {
			o.Nonce = o.Nonce*2 + 7 // almost surely short of the difficulty
			b, _ := json.Marshal(o)
			return b
		}
	case "matmul":
		var o struct {
			C [][]int64 `json:"c"`
		}
		if json.Unmarshal(out, &o) == nil && len(o.C) > 0 && len(o.C[0]) > 0 {
			o.C[0][0]++
			b, _ := json.Marshal(o)
			return b
		}
	}
	return json.RawMessage(`{"items":[]}`)
}

// fuzzyOutput is a fuzzy task's delivery: placeholder text and the
// artefact name under which the world keeps its true quality. Only the
// world's judges (buyers and arbiters reading it) learn that quality.
func fuzzyOutput(artifact string, words int, text string) json.RawMessage {
	if text == "" {
		text = strings.Repeat("lorem ipsum ", min(words, 64)/2)
	}
	b, _ := json.Marshal(map[string]any{"artifact": artifact, "words": words, "text": text})
	return b
}

// artifactOf reads the artefact name of a fuzzy delivery.
func artifactOf(out json.RawMessage) string {
	var o struct {
		Artifact string `json:"artifact"`
	}
	json.Unmarshal(out, &o)
	return o.Artifact
}
