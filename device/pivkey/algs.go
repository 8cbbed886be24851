package pivkey

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"

	"github.com/go-piv/piv-go/v2/piv"
)

// Key algorithm identifiers (SP 800-78-4 Table 6-2 plus Yubico's E0/E1).
var algNames = map[byte]string{
	0x06: "RSA1024", 0x07: "RSA2048", 0x05: "RSA3072", 0x16: "RSA4096",
	0x11: "ECCP256", 0x14: "ECCP384", 0xE0: "ED25519", 0xE1: "X25519",
}

// AlgorithmName names a PIV key algorithm identifier the way ykman does.
func AlgorithmName(id byte) string {
	if n, ok := algNames[id]; ok {
		return n
	}
	return fmt.Sprintf("0x%02X", id)
}

func pinPolicyName(p byte) string {
	return [...]string{"default", "never", "once", "always", "match-once", "match-always", "unknown"}[min(int(p), 6)]
}

func touchPolicyName(p byte) string {
	return [...]string{"default", "never", "always", "cached", "unknown"}[min(int(p), 4)]
}

func pivAlgorithm(name string) (piv.Algorithm, error) {
	switch name {
	case "ECCP256", "":
		return piv.AlgorithmEC256, nil
	case "ECCP384":
		return piv.AlgorithmEC384, nil
	case "RSA1024":
		return piv.AlgorithmRSA1024, nil
	case "RSA2048":
		return piv.AlgorithmRSA2048, nil
	case "RSA3072":
		return piv.AlgorithmRSA3072, nil
	case "RSA4096":
		return piv.AlgorithmRSA4096, nil
	case "ED25519":
		return piv.AlgorithmEd25519, nil
	case "X25519":
		return piv.AlgorithmX25519, nil
	}
	return 0, fmt.Errorf("key algorithm %q unknown (ECCP256, ECCP384, RSA2048, RSA3072, RSA4096, ED25519, X25519)", name)
}

func pivPINPolicy(name string) (piv.PINPolicy, error) {
	switch name {
	case "", "default", "once":
		return piv.PINPolicyOnce, nil
	case "never":
		return piv.PINPolicyNever, nil
	case "always":
		return piv.PINPolicyAlways, nil
	}
	return 0, fmt.Errorf("PIN policy %q unknown (never, once, always)", name)
}

func pivTouchPolicy(name string) (piv.TouchPolicy, error) {
	switch name {
	case "", "default", "never":
		return piv.TouchPolicyNever, nil
	case "always":
		return piv.TouchPolicyAlways, nil
	case "cached":
		return piv.TouchPolicyCached, nil
	}
	return 0, fmt.Errorf("touch policy %q unknown (never, always, cached)", name)
}

// decodePublic decodes the public key template of GET METADATA tag 04 and
// GENERATE (SP 800-73-4 §3.3.2 Table 10: 81 modulus, 82 exponent for RSA;
// 86 point for EC; 86 raw key for Ed25519 and X25519).
func decodePublic(alg byte, b []byte) (crypto.PublicKey, error) {
	fields := map[byte][]byte{}
	for len(b) > 0 {
		t, v, rest, err := readTLV(b)
		if err != nil {
			return nil, err
		}
		fields[t] = v
		b = rest
	}
	switch alg {
	case 0x11, 0x14:
		curve := elliptic.P256()
		ec := ecdh.P256()
		if alg == 0x14 {
			curve, ec = elliptic.P384(), ecdh.P384()
		}
		pt := fields[0x86]
		if _, err := ec.NewPublicKey(pt); err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
		size := (curve.Params().BitSize + 7) / 8
		return &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(pt[1 : 1+size]), Y: new(big.Int).SetBytes(pt[1+size:])}, nil
	case 0xE0:
		if len(fields[0x86]) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 key of %d bytes", len(fields[0x86]))
		}
		return ed25519.PublicKey(fields[0x86]), nil
	case 0xE1:
		return ecdh.X25519().NewPublicKey(fields[0x86])
	case 0x06, 0x07, 0x05, 0x16:
		n, e := fields[0x81], fields[0x82]
		if len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("RSA key template incomplete")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	}
	return nil, fmt.Errorf("algorithm %02X unknown", alg)
}
