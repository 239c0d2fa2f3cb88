package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentmarket/agentmarket/market"
)

// maxSchemaBytes bounds a JSON Schema an agent may publish.
const maxSchemaBytes = 64 << 10

// schemas compiles JSON Schemas once and caches them by content hash. A
// schema may not load anything: $ref to a file or URL is refused, so that
// an agent's schema can neither read the server's files nor reach out.
type schemas struct {
	mu    sync.Mutex
	cache map[[32]byte]*jsonschema.Schema
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema may not load %q: external references are not allowed", url)
}

// compile returns the compiled schema, or an Invalid error.
func (s *schemas) compile(raw json.RawMessage) (*jsonschema.Schema, error) {
	if len(raw) > maxSchemaBytes {
		return nil, market.Errorf(market.TooLarge, "schema_too_large", "schema is %d bytes; the limit is %d", len(raw), maxSchemaBytes)
	}
	key := sha256.Sum256(raw)
	s.mu.Lock()
	if sch, ok := s.cache[key]; ok {
		s.mu.Unlock()
		return sch, nil
	}
	s.mu.Unlock()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, market.Errorf(market.Invalid, "invalid_schema", "schema is not valid JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	c.DefaultDraft(jsonschema.Draft2020)
	const url = "agentmarket:schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, market.Errorf(market.Invalid, "invalid_schema", "schema: %v", err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, market.Errorf(market.Invalid, "invalid_schema", "schema does not compile: %s", firstLine(err.Error()))
	}
	s.mu.Lock()
	if s.cache == nil {
		s.cache = make(map[[32]byte]*jsonschema.Schema)
	}
	if len(s.cache) > 10_000 {
		clear(s.cache)
	}
	s.cache[key] = sch
	s.mu.Unlock()
	return sch, nil
}

// validate checks doc against schema raw. It returns an Invalid error
// that says what is wrong, or nil.
func (s *schemas) validate(raw, doc json.RawMessage, what string) error {
	sch, err := s.compile(raw)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return market.Errorf(market.Invalid, "invalid_json", "%s is not valid JSON", what)
	}
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		msg := err.Error()
		if errors.As(err, &ve) {
			msg = strings.Join(strings.Fields(strings.ReplaceAll(ve.Error(), "\n", "; ")), " ")
		}
		return market.Errorf(market.Invalid, "schema_mismatch", "%s does not match the schema: %s", what, truncateMsg(msg, 300))
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func truncateMsg(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
