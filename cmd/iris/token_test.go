package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/iris-im/iris/gateway/auth"
)

const tokenTestSecret = "token-test-secret-0123456789abcdef" // 34 bytes

var tokenTestNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newTokenCLI(t *testing.T) *testCLI {
	t.Helper()
	tc := newTestCLI(t, nil, nil)
	tc.now = func() time.Time { return tokenTestNow }
	return tc
}

func TestTokenSignsForUser(t *testing.T) {
	tc := newTokenCLI(t)
	t.Setenv("IRIS_AUTH_JWT_SECRET", tokenTestSecret)

	code := tc.execute(context.Background(), []string{"token", "--user", "alice", "--ttl", "30m"})
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, tc.stderr)
	}
	out := tc.stdout.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("stdout %q is not exactly one line", out)
	}
	token := strings.TrimSpace(out)

	v := auth.NewVerifier([]byte(tokenTestSecret), "", []string{"HS256"})
	if err := v.Verify("alice", token, tokenTestNow); err != nil {
		t.Errorf("token rejected at issue time: %v", err)
	}
	if err := v.Verify("alice", token, tokenTestNow.Add(30*time.Minute-time.Second)); err != nil {
		t.Errorf("token rejected before its ttl ended: %v", err)
	}
	if err := v.Verify("alice", token, tokenTestNow.Add(30*time.Minute)); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("token at the end of its ttl: got %v, want ErrTokenExpired", err)
	}
	if err := v.Verify("bob", token, tokenTestNow); !errors.Is(err, jwt.ErrTokenInvalidSubject) {
		t.Errorf("token for alice verified as bob: %v", err)
	}
}

func TestTokenDefaultTTLIs24h(t *testing.T) {
	tc := newTokenCLI(t)
	t.Setenv("IRIS_AUTH_JWT_SECRET", tokenTestSecret)
	if code := tc.execute(context.Background(), []string{"token", "--user", "alice"}); code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, tc.stderr)
	}

	claims := jwt.RegisteredClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(strings.TrimSpace(tc.stdout.String()), &claims); err != nil {
		t.Fatal(err)
	}
	if claims.ExpiresAt == nil || !claims.ExpiresAt.Equal(tokenTestNow.Add(24*time.Hour)) {
		t.Errorf("exp = %v, want %v", claims.ExpiresAt, tokenTestNow.Add(24*time.Hour))
	}
}

func TestTokenIssuerFromConfigFile(t *testing.T) {
	tc := newTokenCLI(t)
	file := filepath.Join(t.TempDir(), "iris.yaml")
	content := "auth:\n  jwt_secret: " + tokenTestSecret + "\n  issuer: iris-prod\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	code := tc.execute(context.Background(), []string{"token", "--config", file, "--user", "alice"})
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, tc.stderr)
	}
	token := strings.TrimSpace(tc.stdout.String())

	if err := auth.NewVerifier([]byte(tokenTestSecret), "iris-prod", []string{"HS256"}).Verify("alice", token, tokenTestNow); err != nil {
		t.Errorf("token rejected by a verifier with issuer iris-prod: %v", err)
	}
	err := auth.NewVerifier([]byte(tokenTestSecret), "other", []string{"HS256"}).Verify("alice", token, tokenTestNow)
	if !errors.Is(err, jwt.ErrTokenInvalidIssuer) {
		t.Errorf("verifier with issuer other: got %v, want ErrTokenInvalidIssuer", err)
	}
}

func TestTokenUsageErrorsExit2(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"no secret", nil, []string{"token", "--user", "alice"},
			[]string{"auth.jwt_secret is not set", "IRIS_AUTH_JWT_SECRET"}},
		{"short secret", map[string]string{"IRIS_AUTH_JWT_SECRET": "short"}, []string{"token", "--user", "alice"},
			[]string{"auth.jwt_secret", "too short"}},
		{"no user flag", map[string]string{"IRIS_AUTH_JWT_SECRET": tokenTestSecret}, []string{"token"},
			[]string{`"user"`}},
		{"empty user", map[string]string{"IRIS_AUTH_JWT_SECRET": tokenTestSecret}, []string{"token", "--user", ""},
			[]string{"--user", "empty"}},
		{"colon in user", map[string]string{"IRIS_AUTH_JWT_SECRET": tokenTestSecret}, []string{"token", "--user", "a:b"},
			[]string{"--user", "':'"}},
		{"control character in user", map[string]string{"IRIS_AUTH_JWT_SECRET": tokenTestSecret},
			[]string{"token", "--user", "a\tb"}, []string{"control characters"}},
		{"user too long", map[string]string{"IRIS_AUTH_JWT_SECRET": tokenTestSecret},
			[]string{"token", "--user", strings.Repeat("u", 257)}, []string{"257 bytes", "limits.user_name"}},
		{"zero ttl", map[string]string{"IRIS_AUTH_JWT_SECRET": tokenTestSecret},
			[]string{"token", "--user", "alice", "--ttl", "0s"}, []string{"--ttl", "at least 1s"}},
		{"ttl without unit", map[string]string{"IRIS_AUTH_JWT_SECRET": tokenTestSecret},
			[]string{"token", "--user", "alice", "--ttl", "24"}, []string{"--ttl"}},
		{"HS256 not accepted", map[string]string{
			"IRIS_AUTH_JWT_SECRET": strings.Repeat("k", 64),
			"IRIS_AUTH_ALGORITHMS": "HS512",
		}, []string{"token", "--user", "alice"}, []string{"auth.algorithms", "HS256"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := newTokenCLI(t)
			for name, value := range c.env {
				t.Setenv(name, value)
			}

			if code := tc.execute(context.Background(), c.args); code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			if out := tc.stdout.String(); out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			checkOneErrorLine(t, tc.stderr.String(), c.want...)
		})
	}
}
