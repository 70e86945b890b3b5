package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway/auth"
)

func (c *cli) newTokenCommand() *cobra.Command {
	var (
		user string
		ttl  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --user NAME [--ttl 24h]",
		Short: "Print a signed login token (JWT) for a user",
		Long: `Print a login token for one user on stdout. The token is an HS256 JWT signed
with auth.jwt_secret, usually set through IRIS_AUTH_JWT_SECRET. Its claims are
sub (the user), iat, nbf (now), exp (now + ttl) and, when auth.issuer is set,
iss. Clients send it at login, as "user:token" in LOGIN or in LOGIN2.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return c.runToken(user, ttl)
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user `name` that the token is valid for (its sub claim)")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token stays valid, such as 30m or 720h")
	if err := cmd.MarkFlagRequired("user"); err != nil {
		panic(err) // the flag is defined just above
	}
	return cmd
}

func (c *cli) runToken(user string, ttl time.Duration) error {
	cfg, err := config.Load(config.LoadOptions{File: c.configFile})
	if err != nil {
		return usageError(err)
	}
	if cfg.Auth.JWTSecret == "" {
		return usageError(fmt.Errorf("auth.jwt_secret is not set: set %s or auth.jwt_secret in the --config file",
			config.EnvVar("auth.jwt_secret")))
	}
	if !slices.Contains(cfg.Auth.Algorithms, auth.SignAlgorithm) {
		return usageError(fmt.Errorf("auth.algorithms (%s) does not include %s, so nodes would reject the token",
			strings.Join(cfg.Auth.Algorithms, ", "), auth.SignAlgorithm))
	}
	if err := validateUserName(user, cfg.Limits.UserName); err != nil {
		return usageError(err)
	}
	if ttl < time.Second {
		return usageError(fmt.Errorf("invalid --ttl %s: must be at least 1s", ttl))
	}

	token, err := auth.Sign([]byte(cfg.Auth.JWTSecret), cfg.Auth.Issuer, user, ttl, c.now())
	if err != nil {
		return failureError(err)
	}
	_, err = fmt.Fprintln(c.stdout, token)
	return err
}

// validateUserName applies the server's rule for user names, so that the
// command never prints a token that no login can use. A name is valid UTF-8
// of 1 to maxBytes bytes, without control characters and without ':',
// which separates the name from the token in LOGIN.
func validateUserName(user string, maxBytes int) error {
	switch {
	case user == "":
		return errors.New("invalid --user: the name is empty")
	case len(user) > maxBytes:
		return fmt.Errorf("invalid --user: the name is %d bytes, and limits.user_name allows %d", len(user), maxBytes)
	case !utf8.ValidString(user):
		return fmt.Errorf("invalid --user %q: the name is not valid UTF-8", user)
	case strings.Contains(user, ":"):
		return fmt.Errorf("invalid --user %q: the name must not contain ':'", user)
	case strings.ContainsFunc(user, unicode.IsControl):
		return fmt.Errorf("invalid --user %q: the name must not contain control characters", user)
	}
	return nil
}
