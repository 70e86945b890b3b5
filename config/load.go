package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// defaultsYAML is the bottom configuration layer, so the binary runs without
// any file on disk.
//
//go:embed iris.yaml
var defaultsYAML []byte

// EnvPrefix starts the name of every environment variable that sets a key.
const EnvPrefix = "IRIS"

// ErrUnknownKey is the cause inside a KeyError for a key that no setting has.
var ErrUnknownKey = errors.New("unknown key")

// LoadOptions selects the layers that Load reads above the embedded defaults.
// Environment variables are always read.
type LoadOptions struct {
	// File is the path of a YAML configuration file. Empty reads no file.
	File string
	// Overrides are values from command-line flags. They override every
	// other layer.
	Overrides []Override
	// ForStart also runs the checks of ValidateForStart, for a node that is
	// about to start.
	ForStart bool
}

// Override is one key set on the command line.
type Override struct {
	// Key is the dotted configuration key, such as "edge.tcp_addr".
	Key string
	// Value is parsed like an environment variable: durations need a unit
	// and lists are comma-separated.
	Value string
	// Flag is the flag's name as typed, such as "--tcp-addr". Error messages
	// name it as the source of a bad value.
	Flag string
}

// EnvVar returns the environment variable that sets a dotted key, for
// example IRIS_AUTH_JWT_SECRET for "auth.jwt_secret".
func EnvVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Load builds a validated configuration from the embedded defaults, then
// opts.File, then IRIS_ environment variables, then opts.Overrides. Each
// layer overrides the one before it.
//
// An empty environment variable counts as unset, so it cannot clear a value
// from a lower layer. A null value in the file also leaves the lower layer in
// place. Errors about keys are a *ValidationError, whose entries name the key
// and where its value came from (file and line, variable or flag).
func Load(opts LoadOptions) (*Config, error) {
	v, sources, err := stackLayers(opts)
	if err != nil {
		return nil, err
	}
	cfg, err := decodeAndValidate(v, sources)
	if err != nil || !opts.ForStart {
		return cfg, err
	}
	if err := cfg.validateForStart(sources); err != nil {
		return nil, err
	}
	return cfg, nil
}

// stackLayers returns a viper instance with every layer in place, and the
// source of each key that a layer above the defaults sets.
func stackLayers(opts LoadOptions) (*viper.Viper, map[string]string, error) {
	v := viper.New()
	sources := make(map[string]string)

	defaults, _, err := parseYAML(defaultsYAML, "embedded iris.yaml")
	if err != nil {
		return nil, nil, fmt.Errorf("embedded defaults are invalid: %w", err)
	}
	for key, value := range defaults {
		v.SetDefault(key, value)
	}

	if opts.File != "" {
		data, err := os.ReadFile(opts.File)
		if err != nil {
			return nil, nil, fmt.Errorf("read config file: %w", err)
		}
		values, lines, err := parseYAML(data, opts.File)
		if err != nil {
			return nil, nil, err
		}
		if err := v.MergeConfigMap(nest(values)); err != nil {
			return nil, nil, fmt.Errorf("config file %s: %w", opts.File, err)
		}
		for key, line := range lines {
			sources[key] = fmt.Sprintf("%s:%d", opts.File, line)
		}
	}

	if err := checkEnvironment(os.Environ()); err != nil {
		return nil, nil, err
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for _, s := range settings {
		if name := EnvVar(s.key); os.Getenv(name) != "" {
			sources[s.key] = "environment variable " + name
		}
	}

	for _, o := range opts.Overrides {
		source := "flag " + o.Flag
		if _, ok := settingByKey[o.Key]; !ok {
			return nil, nil, &ValidationError{Errors: []*KeyError{{Key: o.Key, Source: source, Err: ErrUnknownKey}}}
		}
		v.Set(o.Key, o.Value)
		sources[o.Key] = source
	}
	return v, sources, nil
}

// decodeAndValidate reads every key from v into a Config and validates it.
func decodeAndValidate(v *viper.Viper, sources map[string]string) (*Config, error) {
	cfg := &Config{}
	var problems []*KeyError
	undecoded := make(map[string]bool)
	for _, s := range settings {
		if err := s.decode(cfg, v.Get(s.key)); err != nil {
			problems = append(problems, &KeyError{Key: s.key, Source: sources[s.key], Err: err})
			undecoded[s.key] = true
		}
	}

	if err := cfg.readSecretFile(); err != nil {
		problems = append(problems, &KeyError{Key: "auth.jwt_secret_file", Source: sources["auth.jwt_secret_file"], Err: err})
	}

	// Validate even after decode errors, so one run reports every bad key.
	// A key that failed to decode holds its zero value, so its validation
	// error would only repeat the decode error.
	cfg.fillDerived()
	var invalid *ValidationError
	if errors.As(cfg.validate(sources), &invalid) {
		for _, ke := range invalid.Errors {
			if !undecoded[ke.Key] {
				problems = append(problems, ke)
			}
		}
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Errors: problems}
	}
	return cfg, nil
}

// readSecretFile fills auth.jwt_secret from auth.jwt_secret_file.
func (c *Config) readSecretFile() error {
	path := c.Auth.JWTSecretFile
	if path == "" {
		return nil
	}
	if c.Auth.JWTSecret != "" {
		return errors.New("set either auth.jwt_secret or auth.jwt_secret_file, not both")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the JWT secret: %w", err)
	}
	secret := strings.TrimRight(string(data), "\r\n")
	if secret == "" {
		return fmt.Errorf("%s is empty: write at least 32 random bytes to it, for example with: openssl rand -base64 48 > %s", path, path)
	}
	c.Auth.JWTSecret = Secret(secret)
	return nil
}

// parseYAML reads a configuration file into flat dotted keys and the line
// of each key. It rejects keys that no setting has, duplicate keys and
// sections that are not mappings. Null values are left out, so the lower
// layer's value stays in place.
func parseYAML(data []byte, name string) (values map[string]any, lines map[string]int, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("config file %s: %w", name, err)
	}
	values = make(map[string]any)
	lines = make(map[string]int)
	if len(doc.Content) == 0 {
		return values, lines, nil // empty file
	}

	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("config file %s: line %d: expected sections such as node: and edge:, found a %s",
			name, root.Line, kindName(root))
	}

	var problems []*KeyError
	report := func(key string, node *yaml.Node, err error) {
		problems = append(problems, &KeyError{Key: key, Source: fmt.Sprintf("%s:%d", name, node.Line), Err: err})
	}
	seenSections := make(map[string]int)
	for i := 0; i+1 < len(root.Content); i += 2 {
		sectionNode, body := root.Content[i], root.Content[i+1]
		section := sectionNode.Value
		if first, dup := seenSections[section]; dup {
			report(section, sectionNode, fmt.Errorf("duplicate section, first defined on line %d", first))
			continue
		}
		seenSections[section] = sectionNode.Line
		if !sectionNames[section] {
			report(section, sectionNode, unknownKeyError(section))
			continue
		}
		if isNull(body) {
			continue
		}
		if body.Kind != yaml.MappingNode {
			report(section, body, fmt.Errorf("expected a mapping of keys, found a %s", kindName(body)))
			continue
		}

		parseMapping(section, body, values, lines, report)
	}
	if len(problems) > 0 {
		return nil, nil, &ValidationError{Errors: problems}
	}
	return values, lines, nil
}

// parseMapping reads the keys of one mapping whose dotted key is prefix
// into values and lines. A key that starts a subsection (such as edge.tls)
// is read as a nested mapping.
func parseMapping(prefix string, body *yaml.Node, values map[string]any, lines map[string]int, report func(string, *yaml.Node, error)) {
	for j := 0; j+1 < len(body.Content); j += 2 {
		keyNode, valueNode := body.Content[j], body.Content[j+1]
		key := prefix + "." + keyNode.Value
		if first, dup := lines[key]; dup {
			report(key, keyNode, fmt.Errorf("duplicate key, first defined on line %d", first))
			continue
		}
		lines[key] = keyNode.Line
		if _, ok := settingByKey[key]; !ok {
			if !isSubsection(key) {
				report(key, keyNode, unknownKeyError(key))
				continue
			}
			if isNull(valueNode) {
				continue
			}
			if valueNode.Kind != yaml.MappingNode {
				report(key, valueNode, fmt.Errorf("expected a mapping of keys, found a %s", kindName(valueNode)))
				continue
			}
			parseMapping(key, valueNode, values, lines, report)
			continue
		}
		if isNull(valueNode) {
			continue
		}
		var value any
		if err := valueNode.Decode(&value); err != nil {
			report(key, valueNode, err)
			continue
		}
		values[key] = value
	}
}

// isSubsection reports whether key is the prefix of a setting's key.
func isSubsection(key string) bool {
	for _, s := range settings {
		if strings.HasPrefix(s.key, key+".") {
			return true
		}
	}
	return false
}

// nest turns flat dotted keys into the nested maps that viper merges.
func nest(flat map[string]any) map[string]any {
	out := make(map[string]any)
	for key, value := range flat {
		parts := strings.Split(key, ".")
		m := out
		for _, part := range parts[:len(parts)-1] {
			inner, ok := m[part].(map[string]any)
			if !ok {
				inner = make(map[string]any)
				m[part] = inner
			}
			m = inner
		}
		m[parts[len(parts)-1]] = value
	}
	return out
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return fmt.Sprintf("value %q", n.Value)
	default:
		return "YAML node"
	}
}

// unknownKeyError wraps ErrUnknownKey with the closest known key, because an
// unknown key is often a typo or a key placed in the wrong section.
func unknownKeyError(key string) error {
	if guess := closestKey(key); guess != "" {
		return fmt.Errorf("%w, did you mean %s?", ErrUnknownKey, guess)
	}
	return ErrUnknownKey
}

func closestKey(key string) string {
	best, bestDistance := "", 4 // suggest only keys within 3 edits
	leaf := key[strings.LastIndex(key, ".")+1:]
	for _, s := range settings {
		distance := editDistance(key, s.key)
		if strings.HasSuffix(s.key, "."+leaf) {
			distance = min(distance, 2) // the right key in the wrong section
		}
		if distance < bestDistance {
			best, bestDistance = s.key, distance
		}
	}
	return best
}

// editDistance returns the Levenshtein distance between a and b in bytes.
func editDistance(a, b string) int {
	previous := make([]int, len(b)+1)
	current := make([]int, len(b)+1)
	for j := range previous {
		previous[j] = j
	}
	for i := 1; i <= len(a); i++ {
		current[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			current[j] = min(previous[j]+1, current[j-1]+1, previous[j-1]+cost)
		}
		previous, current = current, previous
	}
	return previous[len(b)]
}

// checkEnvironment rejects IRIS_ variables that name no key, as an unknown
// key in a file is rejected: a misspelt variable would otherwise leave its
// setting at the default without a word.
func checkEnvironment(environ []string) error {
	known := make(map[string]bool, len(settings))
	for _, s := range settings {
		known[EnvVar(s.key)] = true
	}
	var problems []*KeyError
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix+"_") && !known[name] {
			problems = append(problems, &KeyError{Key: name, Source: "environment variable " + name, Err: ErrUnknownKey})
		}
	}
	if len(problems) > 0 {
		return &ValidationError{Errors: problems}
	}
	return nil
}
