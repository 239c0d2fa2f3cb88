package market

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// AgentID is an agent's identity: the did:key of its Ed25519 public key,
// such as "did:key:z6Mk...". It is derived from the key, so it cannot be
// claimed without the private key.
type AgentID string

// PublicKey is an agent's Ed25519 public key.
type PublicKey struct {
	k [ed25519.PublicKeySize]byte
}

// PrivateKey is an agent's Ed25519 private key. It is incomparable and
// never printed: String and the fmt verbs show only the public half.
type PrivateKey struct {
	_ [0]func() // incomparable
	k ed25519.PrivateKey
}

// GenerateKey returns a new key pair read from r, or crypto/rand when r is nil.
func GenerateKey(r io.Reader) (PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	_, k, err := ed25519.GenerateKey(r)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("generate key: %w", err)
	}
	return PrivateKey{k: k}, nil
}

// NewPrivateKeyFromSeed returns the key pair for a 32-byte seed.
func NewPrivateKeyFromSeed(seed []byte) (PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return PrivateKey{}, errors.New("private key seed must be 32 bytes")
	}
	return PrivateKey{k: ed25519.NewKeyFromSeed(seed)}, nil
}

// IsZero reports whether the key is unset.
func (p PrivateKey) IsZero() bool { return p.k == nil }

// Public returns the public half.
func (p PrivateKey) Public() PublicKey {
	var pk PublicKey
	copy(pk.k[:], p.k.Public().(ed25519.PublicKey))
	return pk
}

// Sign signs msg.
func (p PrivateKey) Sign(msg []byte) []byte { return ed25519.Sign(p.k, msg) }

// Ed25519 exposes the key for libraries that sign with it, such as HTTP
// message signatures.
func (p PrivateKey) Ed25519() ed25519.PrivateKey { return p.k }

// Seed returns the 32-byte seed, for writing a key file.
func (p PrivateKey) Seed() []byte { return p.k.Seed() }

// String never prints the secret.
func (p PrivateKey) String() string { return "PrivateKey(" + string(p.Public().DID()) + ")" }

// GoString never prints the secret.
func (p PrivateKey) GoString() string { return p.String() }

// MarshalText encodes the seed as "ed25519-priv:" and base64url, for key
// files. Handle the result as a secret.
func (p PrivateKey) MarshalText() ([]byte, error) {
	if p.k == nil {
		return nil, errors.New("marshal empty private key")
	}
	return []byte("ed25519-priv:" + base64.RawURLEncoding.EncodeToString(p.k.Seed())), nil
}

// UnmarshalText decodes a key written by MarshalText.
func (p *PrivateKey) UnmarshalText(b []byte) error {
	s, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "ed25519-priv:")
	if !ok {
		return errors.New("private key: want prefix ed25519-priv:")
	}
	seed, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	k, err := NewPrivateKeyFromSeed(seed)
	if err != nil {
		return err
	}
	p.k = k.k
	return nil
}

// NewPublicKey wraps a raw Ed25519 public key.
func NewPublicKey(b []byte) (PublicKey, error) {
	var pk PublicKey
	if len(b) != ed25519.PublicKeySize {
		return pk, fmt.Errorf("public key must be %d bytes, got %d", ed25519.PublicKeySize, len(b))
	}
	copy(pk.k[:], b)
	return pk, nil
}

// IsZero reports whether the key is unset.
func (k PublicKey) IsZero() bool { return k.k == [ed25519.PublicKeySize]byte{} }

// Bytes returns the raw 32-byte key.
func (k PublicKey) Bytes() []byte { return append([]byte(nil), k.k[:]...) }

// Ed25519 returns the key for the standard library.
func (k PublicKey) Ed25519() ed25519.PublicKey { return ed25519.PublicKey(k.Bytes()) }

// Verify reports whether sig is k's signature of msg.
func (k PublicKey) Verify(msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.k[:], msg, sig)
}

// didKeyPrefix is the multicodec prefix of an Ed25519 public key (0xed01).
var didKeyPrefix = []byte{0xed, 0x01}

// DID returns the key's did:key identifier.
func (k PublicKey) DID() AgentID {
	return AgentID("did:key:z" + base58Encode(append(append([]byte{}, didKeyPrefix...), k.k[:]...)))
}

func (k PublicKey) String() string { return string(k.DID()) }

// MarshalText encodes the key as its did:key.
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.DID()), nil }

// UnmarshalText decodes a did:key.
func (k *PublicKey) UnmarshalText(b []byte) error {
	pk, err := ParseDID(AgentID(b))
	if err != nil {
		return err
	}
	*k = pk
	return nil
}

// ParseDID returns the Ed25519 public key named by a did:key.
func ParseDID(id AgentID) (PublicKey, error) {
	s, ok := strings.CutPrefix(string(id), "did:key:z")
	if !ok {
		return PublicKey{}, Errorf(Invalid, "invalid_did", "agent id %q is not a did:key (want did:key:z...)", truncate(string(id), 80))
	}
	raw, err := base58Decode(s)
	if err != nil || len(raw) != 2+ed25519.PublicKeySize || raw[0] != didKeyPrefix[0] || raw[1] != didKeyPrefix[1] {
		return PublicKey{}, Errorf(Invalid, "invalid_did", "agent id %q is not an Ed25519 did:key", truncate(string(id), 80))
	}
	return NewPublicKey(raw[2:])
}

// Valid reports whether id parses as an Ed25519 did:key.
func (id AgentID) Valid() bool {
	_, err := ParseDID(id)
	return err == nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var base58Index = func() (idx [256]int8) {
	for i := range idx {
		idx[i] = -1
	}
	for i, c := range base58Alphabet {
		idx[c] = int8(i)
	}
	return idx
}()

// base58Encode encodes b in the Bitcoin base58 alphabet (multibase 'z').
func base58Encode(b []byte) string {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	n := new(big.Int).SetBytes(b)
	radix, mod := big.NewInt(58), new(big.Int)
	var out []byte
	for n.Sign() > 0 {
		n.DivMod(n, radix, mod)
		out = append(out, base58Alphabet[mod.Int64()])
	}
	for range zeros {
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

func base58Decode(s string) ([]byte, error) {
	if len(s) == 0 || len(s) > 128 {
		return nil, errors.New("base58: bad length")
	}
	n := new(big.Int)
	radix := big.NewInt(58)
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	for i := 0; i < len(s); i++ {
		d := base58Index[s[i]]
		if d < 0 {
			return nil, fmt.Errorf("base58: bad character %q", s[i])
		}
		n.Mul(n, radix)
		n.Add(n, big.NewInt(int64(d)))
	}
	return append(make([]byte, zeros), n.Bytes()...), nil
}
