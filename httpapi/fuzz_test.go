package httpapi

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/agentmarket/agentmarket/market"
)

// decoders are the request decoders of every route that takes a body.
var decoders = []func([]byte) (any, error){
	decoderOf[market.Registration](),
	decoderOf[AmountRequest](),
	decoderOf[market.Mandate](),
	decoderOf[market.Offer](),
	decoderOf[market.IntentRequest](),
	decoderOf[market.BidRequest](),
	decoderOf[AwardRequest](),
	decoderOf[market.CounterRequest](),
	decoderOf[market.DeliveryRequest](),
	decoderOf[market.AcceptRequest](),
	decoderOf[market.DisputeRequest](),
	decoderOf[market.ReviewRequest](),
}

func decoderOf[T any]() func([]byte) (any, error) {
	return func(b []byte) (any, error) {
		v, err := decodeJSON[T](b)
		return v, err
	}
}

// decodeCodes are the codes a decoder may fail with.
var decodeCodes = map[string]bool{
	"malformed_json": true, "trailing_data": true, "invalid_field_type": true, "number_out_of_range": true,
	"unknown_field": true, "invalid_field": true, "negative_amount": true,
}

// FuzzDecode feeds arbitrary bytes to every request decoder. A decoder
// must never panic; a failure must be an Invalid market error with one of
// the decoder's codes; and what it accepts must hold no negative amount
// and survive a round trip through JSON unchanged.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"request_id":"req_98765_alpha","intent":"TRANSLATE_AND_FORMAT_DOCUMENT","parameters":{"source_lang":"en","word_count":5000},"constraints":{"max_latency_ms":2500,"max_budget_microcredits":50,"minimum_reputation_score":0.95}}`,
		`{"amount_microcredits":1000000}`,
		`{"amount_microcredits":-1}`,
		`{"amount_microcredits":1e300}`,
		`{"amount_microcredits":99999999999999999999}`,
		`{"price_microcredits":5,"latency_ms":100,"valid_for_ms":10,"note":"x"}`,
		`{"intent":"X","base_price_microcredits":1,"latency_ms":1,"capacity":2,"tags":["a"],"parameter_schema":{"type":"object"}}`,
		`{"id":"did:key:z6Mk","roles":["seller"],"timestamp":"2026-01-01T00:00:00Z","proof":"AAAA"}`,
		`{"agent":"did:key:z","window":"1h","budget_microcredits":5,"expires_at":"2026-01-01T00:00:00Z"}`,
		`{"window":90000}`,
		`{"quality":0.5,"verdict":"partial"}`,
		`{"quality":1e400}`,
		`{"bogus":true}`,
		`{"bid":"b"}{}`,
		`[1,2]`,
		`{"output":{"items":[1,2,3]},"digest":"sha256:00"}`,
		`{`,
		``,
	}
	for _, s := range seeds {
		for i := range decoders {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		dec := decoders[int(which)%len(decoders)]
		v, err := dec(body)
		if err != nil {
			var me *market.Error
			if !errors.As(err, &me) || me.Kind != market.Invalid || !decodeCodes[me.Code] {
				t.Fatalf("decode %q: %v (%T), want an Invalid error with a decoder's code", body, err, err)
			}
			return
		}
		if err := checkAmounts(reflect.ValueOf(v), ""); err != nil {
			t.Fatalf("decode %q accepted a negative amount: %v", body, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", v, err)
		}
		again, err := dec(b)
		if err != nil {
			t.Fatalf("re-encoded %s does not decode: %v", b, err)
		}
		b2, _ := json.Marshal(again)
		if string(b) != string(b2) {
			t.Fatalf("round trip changed the message:\n%s\n%s", b, b2)
		}
	})
}
