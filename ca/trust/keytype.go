package trust

import (
	"crypto"
	"fmt"

	"go.step.sm/crypto/keyutil"
)

// KeyType is the kind of key generated for a new self-signed root.
type KeyType string

// Key types accepted by --ca-key-type.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	RSA2048   KeyType = "rsa-2048"
	RSA4096   KeyType = "rsa-4096"
)

// KeyTypes lists the accepted key types, default first.
var KeyTypes = []KeyType{ECDSAP256, RSA2048, RSA4096}

// ParseKeyType parses a --ca-key-type value.
func ParseKeyType(s string) (KeyType, error) {
	for _, k := range KeyTypes {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("key type %q: want one of %v", s, KeyTypes)
}

// Generate makes a new private key of this type.
func (k KeyType) Generate() (crypto.Signer, error) {
	var (
		s   crypto.Signer
		err error
	)
	switch k {
	case ECDSAP256, "":
		s, err = keyutil.GenerateSigner("EC", "P-256", 0)
	case RSA2048:
		s, err = keyutil.GenerateSigner("RSA", "", 2048)
	case RSA4096:
		s, err = keyutil.GenerateSigner("RSA", "", 4096)
	default:
		return nil, fmt.Errorf("key type %q: want one of %v", string(k), KeyTypes)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", k, err)
	}
	return s, nil
}
