// Package httpsig owns agentmarket's implementation of HTTP Message
// Signatures (RFC 9421) with Ed25519 and of the Content-Digest field (RFC
// 9530). It builds signature bases, signs requests and verifies them; it
// parses and serialises the Signature-Input, Signature and Content-Digest
// fields as RFC 8941 structured fields with github.com/dunglas/httpsfv.
//
// It is deliberately small: it covers the derived components a request
// carries (@method, @authority, @path, @query, @request-target, @scheme)
// and plain header fields, without component parameters such as ;sf or
// ;key. Policy (which components must be covered, how old a signature may
// be, whether a nonce was seen) belongs to the caller.
package httpsig

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
)

// AlgorithmEd25519 is the RFC 9421 name of the only algorithm supported.
const AlgorithmEd25519 = "ed25519"

// Errors that Parse and Verify wrap, so that callers can tell the cases
// apart and answer each with its own problem code.
var (
	// ErrNoSignature means the message carries neither Signature-Input
	// nor Signature.
	ErrNoSignature = errors.New("httpsig: no signature")
	// ErrMalformed means a signature field does not parse, or names a
	// component or parameter this package does not support.
	ErrMalformed = errors.New("httpsig: malformed signature")
	// ErrMissingComponent means a covered component is absent from the
	// message, so no signature base can be built.
	ErrMissingComponent = errors.New("httpsig: covered component missing")
	// ErrBadSignature means the signature does not verify with the key.
	ErrBadSignature = errors.New("httpsig: signature does not verify")
)

// Params are a signature's metadata: the covered components in order and
// the signature parameters. Zero fields are left out.
type Params struct {
	// Components are the covered component identifiers, such as
	// "@method" or "content-digest". Field names are lower case.
	Components []string
	Created    time.Time
	Expires    time.Time
	Nonce      string
	KeyID      string
	Alg        string
	Tag        string
}

// Signature is one signature read from a message.
type Signature struct {
	Label string
	Params
	// Value is the raw signature.
	Value []byte
	// input is the signature's parameters as received: the base must use
	// exactly these, unknown parameters included.
	input httpsfv.InnerList
}

// Parse reads every signature of h's Signature-Input and Signature fields,
// in Signature-Input order. It returns an error wrapping ErrNoSignature
// when both fields are absent and ErrMalformed when they do not parse.
func Parse(h http.Header) ([]Signature, error) {
	inputs, sigs := h.Values("Signature-Input"), h.Values("Signature")
	if len(inputs) == 0 && len(sigs) == 0 {
		return nil, ErrNoSignature
	}
	if len(inputs) == 0 || len(sigs) == 0 {
		return nil, fmt.Errorf("%w: Signature-Input and Signature must come together", ErrMalformed)
	}
	in, err := httpsfv.UnmarshalDictionary(inputs)
	if err != nil {
		return nil, fmt.Errorf("%w: Signature-Input: %v", ErrMalformed, err)
	}
	sd, err := httpsfv.UnmarshalDictionary(sigs)
	if err != nil {
		return nil, fmt.Errorf("%w: Signature: %v", ErrMalformed, err)
	}
	var out []Signature
	for _, label := range in.Names() {
		m, _ := in.Get(label)
		il, ok := m.(httpsfv.InnerList)
		if !ok {
			return nil, fmt.Errorf("%w: Signature-Input %s is not an inner list", ErrMalformed, label)
		}
		p, err := paramsOf(il)
		if err != nil {
			return nil, fmt.Errorf("%w: Signature-Input %s: %v", ErrMalformed, label, err)
		}
		sm, ok := sd.Get(label)
		if !ok {
			return nil, fmt.Errorf("%w: no Signature for label %s", ErrMalformed, label)
		}
		item, ok := sm.(httpsfv.Item)
		if !ok {
			return nil, fmt.Errorf("%w: Signature %s is not an item", ErrMalformed, label)
		}
		value, ok := item.Value.([]byte)
		if !ok {
			return nil, fmt.Errorf("%w: Signature %s is not a byte sequence", ErrMalformed, label)
		}
		out = append(out, Signature{Label: label, Params: p, Value: value, input: il})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: Signature-Input is empty", ErrMalformed)
	}
	return out, nil
}

// paramsOf reads the components and parameters of a Signature-Input member.
func paramsOf(il httpsfv.InnerList) (Params, error) {
	var p Params
	seen := map[string]bool{}
	for _, it := range il.Items {
		name, ok := it.Value.(string)
		if !ok {
			return p, errors.New("a component identifier is not a string")
		}
		if it.Params != nil && len(it.Params.Names()) > 0 {
			return p, fmt.Errorf("component %q: component parameters are not supported", name)
		}
		if !supported(name) {
			return p, fmt.Errorf("component %q is not supported", name)
		}
		if seen[name] {
			return p, fmt.Errorf("component %q is covered twice", name)
		}
		seen[name] = true
		p.Components = append(p.Components, name)
	}
	if il.Params == nil {
		return p, nil
	}
	for _, k := range il.Params.Names() {
		v, _ := il.Params.Get(k)
		var ok bool
		switch k {
		case "created", "expires":
			var n int64
			if n, ok = v.(int64); ok {
				if k == "created" {
					p.Created = time.Unix(n, 0)
				} else {
					p.Expires = time.Unix(n, 0)
				}
			}
		case "nonce":
			p.Nonce, ok = v.(string)
		case "keyid":
			p.KeyID, ok = v.(string)
		case "alg":
			p.Alg, ok = v.(string)
		case "tag":
			p.Tag, ok = v.(string)
		default:
			ok = true // unknown parameters are kept in the base, not interpreted
		}
		if !ok {
			return p, fmt.Errorf("parameter %s has the wrong type", k)
		}
	}
	return p, nil
}

// supported reports whether this package can build the component's value.
func supported(name string) bool {
	switch name {
	case "@method", "@authority", "@path", "@query", "@request-target", "@scheme":
		return true
	}
	if name == "" || strings.HasPrefix(name, "@") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < '!' || c > '~' || c >= 'A' && c <= 'Z' || c == ':' {
			return false
		}
	}
	return true
}

// innerList serialises p as a Signature-Input member.
func (p Params) innerList() httpsfv.InnerList {
	il := httpsfv.InnerList{Params: httpsfv.NewParams()}
	for _, c := range p.Components {
		il.Items = append(il.Items, httpsfv.NewItem(c))
	}
	if !p.Created.IsZero() {
		il.Params.Add("created", p.Created.Unix())
	}
	if !p.Expires.IsZero() {
		il.Params.Add("expires", p.Expires.Unix())
	}
	if p.Nonce != "" {
		il.Params.Add("nonce", p.Nonce)
	}
	if p.Alg != "" {
		il.Params.Add("alg", p.Alg)
	}
	if p.KeyID != "" {
		il.Params.Add("keyid", p.KeyID)
	}
	if p.Tag != "" {
		il.Params.Add("tag", p.Tag)
	}
	return il
}

// Base returns the signature base (RFC 9421 section 2.5) of r for a new
// signature with params p.
func Base(r *http.Request, p Params) ([]byte, error) {
	for _, c := range p.Components {
		if !supported(c) {
			return nil, fmt.Errorf("%w: component %q is not supported", ErrMalformed, c)
		}
	}
	return base(r, p.Components, p.innerList())
}

// Base returns the signature base of r for the received signature s.
func (s Signature) Base(r *http.Request) ([]byte, error) {
	return base(r, s.Components, s.input)
}

func base(r *http.Request, components []string, params httpsfv.InnerList) ([]byte, error) {
	var b strings.Builder
	for _, c := range components {
		v, err := componentValue(r, c)
		if err != nil {
			return nil, err
		}
		b.WriteByte('"')
		b.WriteString(c)
		b.WriteString(`": `)
		b.WriteString(v)
		b.WriteByte('\n')
	}
	sp, err := httpsfv.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("%w: serialise signature parameters: %v", ErrMalformed, err)
	}
	b.WriteString(`"@signature-params": `)
	b.WriteString(sp)
	return []byte(b.String()), nil
}

// componentValue returns a component's value as RFC 9421 section 2 defines
// it. It works on both sides of the wire: a server's incoming request and
// a client's outgoing one.
func componentValue(r *http.Request, name string) (string, error) {
	switch name {
	case "@method":
		return r.Method, nil
	case "@authority":
		return strings.ToLower(Authority(r)), nil
	case "@path":
		if p := r.URL.EscapedPath(); p != "" {
			return p, nil
		}
		return "/", nil
	case "@query":
		return "?" + r.URL.RawQuery, nil
	case "@request-target":
		return r.URL.RequestURI(), nil
	case "@scheme":
		switch {
		case r.URL.Scheme != "":
			return strings.ToLower(r.URL.Scheme), nil
		case r.TLS != nil:
			return "https", nil
		}
		return "http", nil
	}
	vals := append([]string(nil), r.Header.Values(name)...)
	if name == "host" && len(vals) == 0 && Authority(r) != "" {
		vals = []string{Authority(r)}
	}
	if len(vals) == 0 {
		return "", fmt.Errorf("%w: %s", ErrMissingComponent, name)
	}
	for i, v := range vals {
		vals[i] = strings.Trim(v, " \t")
	}
	return strings.Join(vals, ", "), nil
}

// Authority returns the request's authority as it travels in the Host
// header: r.Host on a server, r.Host or else r.URL.Host on a client.
func Authority(r *http.Request) string {
	if r.Host != "" {
		return r.Host
	}
	if r.URL != nil {
		return r.URL.Host
	}
	return ""
}

// Sign signs r with key under label and sets its Signature-Input and
// Signature fields, replacing any signature already there. Content-Digest,
// if covered, must already be set.
func Sign(r *http.Request, label string, p Params, key ed25519.PrivateKey) error {
	b, err := Base(r, p)
	if err != nil {
		return err
	}
	sig := ed25519.Sign(key, b)
	in := httpsfv.NewDictionary()
	in.Add(label, p.innerList())
	sd := httpsfv.NewDictionary()
	sd.Add(label, httpsfv.NewItem(sig))
	inText, err := httpsfv.Marshal(in)
	if err != nil {
		return fmt.Errorf("serialise Signature-Input: %w", err)
	}
	sigText, err := httpsfv.Marshal(sd)
	if err != nil {
		return fmt.Errorf("serialise Signature: %w", err)
	}
	r.Header.Set("Signature-Input", inText)
	r.Header.Set("Signature", sigText)
	return nil
}

// Verify checks s against r with an Ed25519 public key. It returns an
// error wrapping ErrBadSignature when the signature does not verify,
// ErrMissingComponent when a covered component is absent, and
// ErrMalformed for an alg other than ed25519.
func (s Signature) Verify(r *http.Request, pub ed25519.PublicKey) error {
	if s.Alg != "" && s.Alg != AlgorithmEd25519 {
		return fmt.Errorf("%w: algorithm %q is not supported", ErrMalformed, s.Alg)
	}
	b, err := s.Base(r)
	if err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize || len(s.Value) != ed25519.SignatureSize || !ed25519.Verify(pub, b, s.Value) {
		return ErrBadSignature
	}
	return nil
}

// Covers reports whether the signature covers the component.
func (p Params) Covers(component string) bool {
	for _, c := range p.Components {
		if c == component {
			return true
		}
	}
	return false
}
