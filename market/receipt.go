package market

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Receipt is the market's signed record of one settlement. Receipts form a
// hash chain: each carries the hash of the one before, so an agent can
// carry its history elsewhere and have it checked with the market's
// public key alone. Quality is in basis points so that the signed bytes
// hold no floating point.
type Receipt struct {
	Seq                    uint64    `json:"seq"`
	Market                 AgentID   `json:"market"` // the did:key of the signing key
	Contract               string    `json:"contract"`
	IntentID               string    `json:"intent_id"`
	Intent                 string    `json:"intent"`
	Buyer                  AgentID   `json:"buyer"`
	Seller                 AgentID   `json:"seller"`
	Arbiter                AgentID   `json:"arbiter,omitempty"`
	PriceMicrocredits      int64     `json:"price_microcredits"`
	PaidMicrocredits       int64     `json:"paid_microcredits"`
	RefundedMicrocredits   int64     `json:"refunded_microcredits"`
	FeeMicrocredits        int64     `json:"fee_microcredits"`
	ArbiterFeeMicrocredits int64     `json:"arbiter_fee_microcredits"`
	Result                 string    `json:"result"`
	QualityBps             int64     `json:"quality_bps"`
	Reason                 string    `json:"reason"`
	SettledAt              time.Time `json:"settled_at"`
	PrevHash               string    `json:"prev_hash"` // hex sha256 of the previous receipt's signed bytes; empty for the first
	Signature              string    `json:"signature,omitempty"`
}

// SignedBytes returns the canonical bytes the signature covers: the
// receipt's JSON with the signature left out. encoding/json writes struct
// fields in declaration order, so the bytes are the same everywhere.
func (r Receipt) SignedBytes() []byte {
	r.Signature = ""
	r.SettledAt = r.SettledAt.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("market: marshal receipt: %v", err)) // cannot fail: plain fields
	}
	return b
}

// Hash returns the hex sha256 of the receipt's signed bytes: the next
// receipt's PrevHash.
func (r Receipt) Hash() string {
	sum := sha256.Sum256(r.SignedBytes())
	return hex.EncodeToString(sum[:])
}

// Sign sets the receipt's Market and Signature with the market's key.
func (r Receipt) Sign(key PrivateKey) Receipt {
	r.Market = key.Public().DID()
	r.Signature = base64.RawURLEncoding.EncodeToString(key.Sign(r.SignedBytes()))
	return r
}

// VerifyReceipt checks the receipt's signature against the market key.
func VerifyReceipt(r Receipt, market PublicKey) error {
	if r.Market != market.DID() {
		return Errorf(Invalid, "receipt_wrong_market", "receipt %d was signed by %s, not %s", r.Seq, r.Market, market.DID())
	}
	sig, err := base64.RawURLEncoding.DecodeString(r.Signature)
	if err != nil || !market.Verify(r.SignedBytes(), sig) {
		return Errorf(Invalid, "receipt_bad_signature", "receipt %d: signature does not verify", r.Seq)
	}
	return nil
}

// VerifyReceiptChain checks each receipt's signature and that each links
// to the one before it. The receipts must be consecutive.
func VerifyReceiptChain(rs []Receipt, market PublicKey) error {
	for i, r := range rs {
		if err := VerifyReceipt(r, market); err != nil {
			return err
		}
		if i > 0 {
			if r.Seq != rs[i-1].Seq+1 {
				return Errorf(Invalid, "receipt_gap", "receipt %d does not follow %d", r.Seq, rs[i-1].Seq)
			}
			if r.PrevHash != rs[i-1].Hash() {
				return Errorf(Invalid, "receipt_chain_broken", "receipt %d does not link to receipt %d", r.Seq, rs[i-1].Seq)
			}
		}
	}
	return nil
}
