// Package auth signs and verifies the JSON Web Tokens that clients present
// at login. Tokens are HMAC-signed with a secret shared by every node, and a
// token is valid for one user (its sub claim) until its exp claim.
package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// minSecretSizes maps each supported algorithm to the shortest secret it
// accepts, in bytes. RFC 7518, section 3.2, requires an HMAC key at least as
// long as the hash output.
var minSecretSizes = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// MinSecretSize returns the shortest secret, in bytes, that algorithm
// accepts, and false when the algorithm is not supported.
func MinSecretSize(algorithm string) (int, bool) {
	size, ok := minSecretSizes[algorithm]
	return size, ok
}

// SignAlgorithm is the algorithm that Sign uses.
const SignAlgorithm = "HS256"

// ErrInvalidToken is wrapped by every error that Verify returns. The jwt
// package's error (such as jwt.ErrTokenExpired) is wrapped too.
var ErrInvalidToken = errors.New("invalid token")

// Verifier checks login tokens. It is safe for concurrent use.
type Verifier struct {
	secret     []byte
	issuer     string
	algorithms []string
	err        error // invalid settings given to NewVerifier
}

// NewVerifier returns a Verifier that accepts tokens signed with secret by
// one of algorithms (a subset of HS256, HS384 and HS512). When issuer is not
// empty, the iss claim must equal it.
//
// Invalid settings do not panic: an empty algorithm list, "none" or another
// non-HMAC algorithm, or a secret shorter than MinSecretSize returns for one
// of the algorithms. They make every Verify call fail, and Err returns the
// problem. config.Validate rejects the same settings.
func NewVerifier(secret []byte, issuer string, algorithms []string) *Verifier {
	return &Verifier{
		secret:     slices.Clone(secret),
		issuer:     issuer,
		algorithms: slices.Clone(algorithms),
		err:        checkSettings(secret, algorithms),
	}
}

func checkSettings(secret []byte, algorithms []string) error {
	if len(algorithms) == 0 {
		return errors.New("auth: no signing algorithms given: expected HS256, HS384 or HS512")
	}
	for _, alg := range algorithms {
		minSize, ok := MinSecretSize(alg)
		if !ok {
			return fmt.Errorf("auth: unsupported signing algorithm %q: expected HS256, HS384 or HS512", alg)
		}
		if len(secret) < minSize {
			return fmt.Errorf("auth: secret is %d bytes, but %s needs at least %d", len(secret), alg, minSize)
		}
	}
	return nil
}

// Err returns the problem with the settings given to NewVerifier, or nil
// when the Verifier can accept tokens.
func (v *Verifier) Err() error { return v.err }

// Verify returns nil if token is valid for user at time now. It checks the
// signature with the pinned algorithms and requires exp > now. It also
// rejects a token whose nbf or iat lies after now, a sub other than user,
// and, when the Verifier has an issuer, any other iss.
//
// No clock skew is allowed, so the signer's clock and this node's clock
// must agree.
func (v *Verifier) Verify(user, token string, now time.Time) error {
	if v.err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidToken, v.err)
	}
	if user == "" {
		// jwt.WithSubject("") would skip the sub check.
		return fmt.Errorf("%w: empty user name", ErrInvalidToken)
	}

	options := []jwt.ParserOption{
		jwt.WithValidMethods(v.algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithSubject(user),
		jwt.WithTimeFunc(func() time.Time { return now }),
	}
	if v.issuer != "" {
		options = append(options, jwt.WithIssuer(v.issuer))
	}

	_, err := jwt.ParseWithClaims(token, &jwt.RegisteredClaims{}, v.key, options...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return nil
}

// key returns the secret after checking that the token names an HMAC
// algorithm. WithValidMethods already enforces the list, and this check
// keeps a non-HMAC method from ever receiving the shared secret as its key.
func (v *Verifier) key(token *jwt.Token) (any, error) {
	if _, ok := token.Method.(*jwt.SigningMethodHMAC); !ok {
		return nil, fmt.Errorf("unexpected signing method %q", token.Header["alg"])
	}
	return v.secret, nil
}

// Sign returns an HS256 token for user, valid from now until now+ttl. It
// sets the claims sub, iat, nbf and exp, and iss when issuer is not empty.
// The times are whole seconds, as JWT numeric dates are.
func Sign(secret []byte, issuer, user string, ttl time.Duration, now time.Time) (string, error) {
	if minSize, _ := MinSecretSize(SignAlgorithm); len(secret) < minSize {
		return "", fmt.Errorf("auth: secret is %d bytes, but %s needs at least %d", len(secret), SignAlgorithm, minSize)
	}
	if user == "" {
		return "", errors.New("auth: empty user name")
	}
	if ttl < time.Second {
		// exp is rounded down to whole seconds, so a shorter token could be
		// expired when it is issued.
		return "", fmt.Errorf("auth: token lifetime must be at least 1s, got %s", ttl)
	}

	claims := jwt.RegisteredClaims{
		Subject:   user,
		Issuer:    issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return token, nil
}
