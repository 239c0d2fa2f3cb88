package httpsig

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/dunglas/httpsfv"
)

// Errors that VerifyContentDigest wraps.
var (
	// ErrDigestMissing means the Content-Digest field is absent or holds
	// no sha-256 digest.
	ErrDigestMissing = errors.New("httpsig: no sha-256 content digest")
	// ErrDigestMismatch means a digest does not match the content.
	ErrDigestMismatch = errors.New("httpsig: content digest does not match")
)

// ContentDigest returns the RFC 9530 Content-Digest field value of body
// with sha-256, such as "sha-256=:X48E9q...=:".
func ContentDigest(body []byte) string {
	sum := sha256.Sum256(body)
	d := httpsfv.NewDictionary()
	d.Add("sha-256", httpsfv.NewItem(sum[:]))
	s, err := httpsfv.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("httpsig: marshal content digest: %v", err)) // cannot fail: a fixed key and a byte sequence
	}
	return s
}

// VerifyContentDigest checks Content-Digest field values against body. A
// sha-256 digest is required; a sha-512 digest, if present, must match
// too; other algorithms are ignored, as RFC 9530 allows.
func VerifyContentDigest(values []string, body []byte) error {
	if len(values) == 0 {
		return ErrDigestMissing
	}
	d, err := httpsfv.UnmarshalDictionary(values)
	if err != nil {
		return fmt.Errorf("%w: Content-Digest: %v", ErrMalformed, err)
	}
	digest := func(alg string) ([]byte, bool, error) {
		m, ok := d.Get(alg)
		if !ok {
			return nil, false, nil
		}
		it, ok := m.(httpsfv.Item)
		if !ok {
			return nil, true, fmt.Errorf("%w: Content-Digest %s is not an item", ErrMalformed, alg)
		}
		b, ok := it.Value.([]byte)
		if !ok {
			return nil, true, fmt.Errorf("%w: Content-Digest %s is not a byte sequence", ErrMalformed, alg)
		}
		return b, true, nil
	}
	s256, ok, err := digest("sha-256")
	if err != nil {
		return err
	}
	if !ok {
		return ErrDigestMissing
	}
	sum := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(s256, sum[:]) != 1 {
		return ErrDigestMismatch
	}
	s512, ok, err := digest("sha-512")
	if err != nil {
		return err
	}
	if ok {
		sum := sha512.Sum512(body)
		if subtle.ConstantTimeCompare(s512, sum[:]) != 1 {
			return ErrDigestMismatch
		}
	}
	return nil
}
