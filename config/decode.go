package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// setting is one leaf key of Config and the path to its struct field.
type setting struct {
	key   string // dotted key, such as "edge.tcp_addr"
	index []int  // field index path for reflect.Value.FieldByIndex
}

// settings lists every key in struct order. The yaml tags of Config are the
// single source of key names, so a new field needs no registration.
var (
	settings     = collectSettings(reflect.TypeFor[Config]())
	settingByKey = indexSettings(settings)
	sectionNames = collectSections(settings)
)

func collectSettings(t reflect.Type) []setting {
	var out []setting
	for i := range t.NumField() {
		section := t.Field(i)
		out = appendSettings(out, section.Type, yamlName(section), []int{i})
	}
	return out
}

// appendSettings adds the keys of struct t, whose own key is prefix, to
// out. A struct field is a subsection (such as edge.tls) whose keys nest one
// level further.
func appendSettings(out []setting, t reflect.Type, prefix string, index []int) []setting {
	for j := range t.NumField() {
		field := t.Field(j)
		key := prefix + "." + yamlName(field)
		path := append(append([]int(nil), index...), j)
		if field.Type.Kind() == reflect.Struct {
			out = appendSettings(out, field.Type, key, path)
			continue
		}
		out = append(out, setting{key: key, index: path})
	}
	return out
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		panic("config: field " + f.Name + " has no yaml tag")
	}
	return name
}

func indexSettings(list []setting) map[string]setting {
	out := make(map[string]setting, len(list))
	for _, s := range list {
		out[s.key] = s
	}
	return out
}

func collectSections(list []setting) map[string]bool {
	out := make(map[string]bool)
	for _, s := range list {
		section, _, _ := strings.Cut(s.key, ".")
		out[section] = true
	}
	return out
}

var durationType = reflect.TypeFor[time.Duration]()

// decode converts raw, as returned by viper from any layer, and stores it in
// the setting's field of cfg. YAML yields typed values, while environment
// variables and flags yield strings, which are parsed here. A value that does
// not parse is an error, unlike viper's GetInt and GetDuration (v1.21), which
// return zero.
func (s setting) decode(cfg *Config, raw any) error {
	field := reflect.ValueOf(cfg).Elem().FieldByIndex(s.index)
	if raw == nil {
		return fmt.Errorf("missing value")
	}

	switch {
	case field.Type() == durationType:
		d, err := toDuration(raw)
		if err != nil {
			return err
		}
		field.SetInt(int64(d))

	case field.Kind() == reflect.String:
		text, err := toString(raw)
		if err != nil {
			return err
		}
		field.SetString(text)

	case field.Kind() == reflect.Int:
		n, err := toInt(raw)
		if err != nil {
			return err
		}
		field.SetInt(int64(n))

	case field.Kind() == reflect.Bool:
		b, err := toBool(raw)
		if err != nil {
			return err
		}
		field.SetBool(b)

	case field.Kind() == reflect.Slice && field.Type().Elem().Kind() == reflect.String:
		list, err := toStringList(raw)
		if err != nil {
			return err
		}
		field.Set(reflect.ValueOf(list))

	default:
		panic(fmt.Sprintf("config: %s has unsupported type %s", s.key, field.Type()))
	}
	return nil
}

func toDuration(raw any) (time.Duration, error) {
	switch v := raw.(type) {
	case time.Duration:
		return v, nil
	case string:
		text := strings.TrimSpace(v)
		d, err := time.ParseDuration(text)
		if err == nil {
			return d, nil
		}
		if _, numberErr := strconv.ParseFloat(text, 64); numberErr == nil {
			return 0, missingUnitError(text)
		}
		return 0, fmt.Errorf("invalid duration %q: expected a number with a unit, such as 500ms, 10s or 5m", text)
	case int, int64, uint64, float64:
		// A bare number would be nanoseconds, which is never what a person
		// means by "login_timeout: 10". Only 0 is unambiguous.
		if text := fmt.Sprint(v); text != "0" {
			return 0, missingUnitError(text)
		}
		return 0, nil
	default:
		return 0, fmt.Errorf("expected a duration such as 10s, found %s", describe(raw))
	}
}

func missingUnitError(number string) error {
	return fmt.Errorf("duration %s has no unit: write it as %ss or %sms", number, number, number)
}

func toString(raw any) (string, error) {
	switch v := raw.(type) {
	case string:
		return v, nil
	case int, int64, uint64, float64, bool:
		// YAML reads values such as "name: 42" or "issuer: true" as numbers
		// or booleans, but the text as written is what the person meant.
		return fmt.Sprint(v), nil
	default:
		return "", fmt.Errorf("expected a string, found %s", describe(raw))
	}
}

func toInt(raw any) (int, error) {
	switch v := raw.(type) {
	case int:
		return v, nil
	case int64:
		return int(v), nil
	case uint64:
		if v > math.MaxInt {
			return 0, fmt.Errorf("integer %d is too large", v)
		}
		return int(v), nil
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return 0, fmt.Errorf("expected an integer, found %v", v)
		}
		return int(v), nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("expected an integer, found %q", v)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("expected an integer, found %s", describe(raw))
	}
}

func toBool(raw any) (bool, error) {
	switch v := raw.(type) {
	case bool:
		return v, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return false, fmt.Errorf("expected true or false, found %q", v)
		}
		return b, nil
	default:
		return false, fmt.Errorf("expected true or false, found %s", describe(raw))
	}
}

// toStringList accepts a YAML list, or a comma-separated string from an
// environment variable or flag.
func toStringList(raw any) ([]string, error) {
	switch v := raw.(type) {
	case []string:
		return append([]string(nil), v...), nil
	case []any:
		out := make([]string, 0, len(v))
		for i, item := range v {
			text, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("item %d: expected a string, found %s", i, describe(item))
			}
			out = append(out, text)
		}
		return out, nil
	case string:
		out := []string{}
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("expected a list, found %s", describe(raw))
	}
}

// describe names a value's kind without printing it, because the value may
// be a secret.
func describe(raw any) string {
	switch raw.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	default:
		return fmt.Sprintf("a value of type %T", raw)
	}
}
