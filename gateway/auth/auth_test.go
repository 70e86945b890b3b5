package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testSecret  = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	otherSecret = []byte("fedcba9876543210fedcba9876543210")
	testNow     = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
)

// signClaims builds a token by hand, so tests can produce tokens that Sign
// would never issue.
func signClaims(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	token, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign test token: %v", err)
	}
	return token
}

// validClaims returns claims that pass Verify for "alice" at testNow with
// issuer "iris-test". Cases change one claim each.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "alice",
		"iss": "iris-test",
		"iat": testNow.Add(-time.Minute).Unix(),
		"nbf": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
	}
}

func withClaim(name string, value any) jwt.MapClaims {
	claims := validClaims()
	if value == nil {
		delete(claims, name)
	} else {
		claims[name] = value
	}
	return claims
}

func mustVerifier(t *testing.T, issuer string, algorithms ...string) *Verifier {
	t.Helper()
	v := NewVerifier(testSecret, issuer, algorithms)
	if err := v.Err(); err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func TestVerifyAcceptsValidTokens(t *testing.T) {
	cases := []struct {
		name   string
		issuer string
		claims jwt.MapClaims
	}{
		{"all claims with issuer", "iris-test", validClaims()},
		{"issuer not configured", "", validClaims()},
		{"no nbf and no iat", "", withClaim("nbf", nil)},
		{"nbf equal to now", "", withClaim("nbf", testNow.Unix())},
		{"exp one second after now", "", withClaim("exp", testNow.Add(time.Second).Unix())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := mustVerifier(t, tc.issuer, "HS256")
			token := signClaims(t, jwt.SigningMethodHS256, testSecret, tc.claims)
			if err := v.Verify("alice", token, testNow); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestVerifyRejections(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	valid := signClaims(t, jwt.SigningMethodHS256, testSecret, validClaims())
	parts := strings.Split(valid, ".")
	tamperedClaims := validClaims()
	tamperedClaims["sub"] = "mallory"
	tamperedPayload := strings.Split(signClaims(t, jwt.SigningMethodHS256, otherSecret, tamperedClaims), ".")[1]

	cases := []struct {
		name  string
		user  string
		token string
		want  error // the jwt sentinel inside ErrInvalidToken; nil checks ErrInvalidToken only
	}{
		{
			name:  "expired",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, testSecret, withClaim("exp", testNow.Add(-time.Second).Unix())),
			want:  jwt.ErrTokenExpired,
		},
		{
			name:  "exp equal to now",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, testSecret, withClaim("exp", testNow.Unix())),
			want:  jwt.ErrTokenExpired,
		},
		{
			name:  "no exp",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, testSecret, withClaim("exp", nil)),
			want:  jwt.ErrTokenRequiredClaimMissing,
		},
		{
			name:  "exp not a number",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, testSecret, withClaim("exp", "tomorrow")),
			want:  jwt.ErrTokenMalformed,
		},
		{
			name:  "alg none",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims()),
			want:  jwt.ErrTokenSignatureInvalid,
		},
		{
			name:  "alg HS512 not pinned",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS512, testSecret, validClaims()),
			want:  jwt.ErrTokenSignatureInvalid,
		},
		{
			name:  "alg ES256",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodES256, ecKey, validClaims()),
			want:  jwt.ErrTokenSignatureInvalid,
		},
		{
			name:  "wrong sub",
			user:  "bob",
			token: valid,
			want:  jwt.ErrTokenInvalidSubject,
		},
		{
			name:  "no sub",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, testSecret, withClaim("sub", nil)),
			want:  jwt.ErrTokenRequiredClaimMissing,
		},
		{
			name:  "empty user",
			user:  "",
			token: valid,
			want:  nil,
		},
		{
			name:  "wrong iss",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, testSecret, withClaim("iss", "someone-else")),
			want:  jwt.ErrTokenInvalidIssuer,
		},
		{
			name:  "no iss",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, testSecret, withClaim("iss", nil)),
			want:  jwt.ErrTokenRequiredClaimMissing,
		},
		{
			name:  "bad signature",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, otherSecret, validClaims()),
			want:  jwt.ErrTokenSignatureInvalid,
		},
		{
			name:  "payload swapped",
			user:  "mallory",
			token: parts[0] + "." + tamperedPayload + "." + parts[2],
			want:  jwt.ErrTokenSignatureInvalid,
		},
		{
			name:  "nbf in future",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, testSecret, withClaim("nbf", testNow.Add(time.Second).Unix())),
			want:  jwt.ErrTokenNotValidYet,
		},
		{
			name:  "iat in future",
			user:  "alice",
			token: signClaims(t, jwt.SigningMethodHS256, testSecret, withClaim("iat", testNow.Add(time.Minute).Unix())),
			want:  jwt.ErrTokenUsedBeforeIssued,
		},
		{
			name:  "malformed",
			user:  "alice",
			token: "not.a.token",
			want:  jwt.ErrTokenMalformed,
		},
		{
			name:  "empty token",
			user:  "alice",
			token: "",
			want:  jwt.ErrTokenMalformed,
		},
	}

	v := mustVerifier(t, "iris-test", "HS256")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Verify(tc.user, tc.token, testNow)
			if err == nil {
				t.Fatal("Verify accepted the token")
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %q does not wrap ErrInvalidToken", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %q does not wrap %q", err, tc.want)
			}
		})
	}
}

func TestVerifyPinnedAlgorithms(t *testing.T) {
	secret := []byte(strings.Repeat("k", 64))
	v := NewVerifier(secret, "", []string{"HS256", "HS512"})
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}

	for _, method := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS512} {
		token := signClaims(t, method, secret, validClaims())
		if err := v.Verify("alice", token, testNow); err != nil {
			t.Errorf("%s token rejected: %v", method.Alg(), err)
		}
	}

	token := signClaims(t, jwt.SigningMethodHS384, secret, validClaims())
	if err := v.Verify("alice", token, testNow); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Errorf("HS384 token: got %v, want ErrTokenSignatureInvalid", err)
	}
}

func TestNewVerifierBadSettingsFailClosed(t *testing.T) {
	cases := []struct {
		name       string
		secret     []byte
		algorithms []string
		wantText   string
	}{
		{"no algorithms", testSecret, nil, "no signing algorithms"},
		{"alg none", testSecret, []string{"none"}, `"none"`},
		{"alg RS256", testSecret, []string{"RS256"}, `"RS256"`},
		{"lower case name", testSecret, []string{"hs256"}, `"hs256"`},
		{"empty secret", nil, []string{"HS256"}, "0 bytes"},
		{"secret too short", testSecret[:31], []string{"HS256"}, "31 bytes"},
		{"secret too short for HS512", testSecret, []string{"HS256", "HS512"}, "HS512 needs at least 64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier(tc.secret, "", tc.algorithms)
			err := v.Err()
			if err == nil {
				t.Fatal("NewVerifier accepted the settings")
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not mention %q", err, tc.wantText)
			}

			// A token that any HMAC algorithm would accept must still fail.
			token := signClaims(t, jwt.SigningMethodHS256, tc.secret, validClaims())
			verifyErr := v.Verify("alice", token, testNow)
			if !errors.Is(verifyErr, ErrInvalidToken) {
				t.Errorf("Verify with invalid settings returned %v, want ErrInvalidToken", verifyErr)
			}
		})
	}
}

func TestNewVerifierCopiesSecret(t *testing.T) {
	secret := []byte(string(testSecret))
	v := NewVerifier(secret, "", []string{"HS256"})
	secret[0] ^= 0xff // the caller reuses its buffer

	token := signClaims(t, jwt.SigningMethodHS256, testSecret, validClaims())
	if err := v.Verify("alice", token, testNow); err != nil {
		t.Errorf("Verify after the caller changed its secret buffer: %v", err)
	}
}

func TestSignClaims(t *testing.T) {
	now := testNow.Add(700 * time.Millisecond) // not a whole second
	token, err := Sign(testSecret, "iris-test", "alice", 24*time.Hour, now)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}

	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return testSecret, nil },
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		t.Fatalf("parse signed token: %v", err)
	}
	if alg := parsed.Method.Alg(); alg != "HS256" {
		t.Errorf("alg = %s, want HS256", alg)
	}
	if sub := claims["sub"]; sub != "alice" {
		t.Errorf("sub = %v, want alice", sub)
	}
	if iss := claims["iss"]; iss != "iris-test" {
		t.Errorf("iss = %v, want iris-test", iss)
	}
	wantSeconds := map[string]int64{
		"iat": testNow.Unix(),
		"nbf": testNow.Unix(),
		"exp": testNow.Add(24 * time.Hour).Unix(),
	}
	for name, want := range wantSeconds {
		got, ok := claims[name].(float64)
		if !ok {
			t.Errorf("%s missing or not a number: %v", name, claims[name])
			continue
		}
		if int64(got) != want {
			t.Errorf("%s = %d, want %d", name, int64(got), want)
		}
	}
}

func TestSignWithoutIssuer(t *testing.T) {
	token, err := Sign(testSecret, "", "alice", time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		t.Fatal(err)
	}
	if _, present := claims["iss"]; present {
		t.Errorf("iss = %v, want no iss claim", claims["iss"])
	}
}

func TestSignVerifyLifetime(t *testing.T) {
	v := mustVerifier(t, "iris-test", "HS256")
	token, err := Sign(testSecret, "iris-test", "alice", time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}

	checks := []struct {
		at      time.Time
		wantErr error
	}{
		{testNow.Add(-time.Second), jwt.ErrTokenNotValidYet},
		{testNow, nil},
		{testNow.Add(time.Hour - time.Second), nil},
		{testNow.Add(time.Hour), jwt.ErrTokenExpired},
	}
	for _, c := range checks {
		err := v.Verify("alice", token, c.at)
		if c.wantErr == nil && err != nil {
			t.Errorf("at %s: %v", c.at.Sub(testNow), err)
		}
		if c.wantErr != nil && !errors.Is(err, c.wantErr) {
			t.Errorf("at %s: got %v, want %v", c.at.Sub(testNow), err, c.wantErr)
		}
	}

	if err := v.Verify("bob", token, testNow); !errors.Is(err, jwt.ErrTokenInvalidSubject) {
		t.Errorf("token for alice verified as bob: %v", err)
	}
}

func TestSignRejectsBadInput(t *testing.T) {
	cases := []struct {
		name     string
		secret   []byte
		user     string
		ttl      time.Duration
		wantText string
	}{
		{"short secret", testSecret[:16], "alice", time.Hour, "16 bytes"},
		{"empty user", testSecret, "", time.Hour, "empty user name"},
		{"zero ttl", testSecret, "alice", 0, "at least 1s"},
		{"negative ttl", testSecret, "alice", -time.Hour, "at least 1s"},
		{"sub-second ttl", testSecret, "alice", 500 * time.Millisecond, "at least 1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token, err := Sign(tc.secret, "", tc.user, tc.ttl, testNow)
			if err == nil {
				t.Fatalf("Sign returned token %q", token)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not mention %q", err, tc.wantText)
			}
		})
	}
}
