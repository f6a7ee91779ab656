package conf

import (
	"bytes"
	"fmt"
	"strings"
)

// lineError is a problem found before there is a YAML tree to attach a path to.
type lineError struct {
	line int
	msg  string
}

// expandEnv substitutes ${VAR} and ${VAR:-default} in the raw file text, before YAML parsing, so
// a variable can supply any scalar (a port, a duration, a whole address). "$$" is a literal "$";
// a "$" not followed by "{" or "$" is left alone so regexes like "^/api$" need no escaping.
//
// ":-" follows the shell: the default applies when the variable is unset or empty. A value may
// not contain a newline: that would shift every later line and make error line numbers lie.
// Whole-line comments are copied verbatim so docs in a config can mention ${VAR}; a trailing
// comment after a value is still expanded (telling it apart from a "#" inside a quoted string
// would take a YAML lexer).
func expandEnv(data []byte, lookup func(string) (string, bool)) ([]byte, []lineError) {
	var (
		out  bytes.Buffer
		errs []lineError
		line = 1
	)
	out.Grow(len(data))
	lineStart := true
	for i := 0; i < len(data); {
		if lineStart {
			lineStart = false
			if j := commentLineEnd(data[i:]); j > 0 {
				out.Write(data[i : i+j])
				i += j
				continue
			}
		}
		c := data[i]
		if c != '$' {
			if c == '\n' {
				line++
				lineStart = true
			}
			out.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(data) && data[i+1] == '$' {
			out.WriteByte('$')
			i += 2
			continue
		}
		if i+1 >= len(data) || data[i+1] != '{' {
			out.WriteByte('$')
			i++
			continue
		}
		rest := data[i+2:]
		end := bytes.IndexAny(rest, "}\n")
		if end < 0 || rest[end] != '}' {
			errs = append(errs, lineError{line, "unterminated \"${\": close it with \"}\" on the same line, or write \"$${\" for a literal"})
			// Copy the rest of the line verbatim so line counting stays right.
			if end < 0 {
				end = len(rest)
			}
			out.Write(data[i : i+2+end])
			i += 2 + end
			continue
		}
		body := string(rest[:end])
		// On failure the reference is left in place: the text then still parses as YAML, so
		// the error can be given the key path of the value it sits in.
		ref := data[i : i+2+end+1]
		i += 2 + end + 1
		name, def, hasDef := strings.Cut(body, ":-")
		if !validVarName(name) {
			errs = append(errs, lineError{line, fmt.Sprintf("invalid variable reference ${%s}: want ${NAME} or ${NAME:-default} where NAME is letters, digits and _", body)})
			out.Write(ref)
			continue
		}
		if hasDef && strings.Contains(def, "${") {
			errs = append(errs, lineError{line, fmt.Sprintf("${%s}: nested ${...} in a default is not supported", name)})
			out.Write(ref)
			continue
		}
		val, ok := lookup(name)
		switch {
		case hasDef && val == "":
			val = def
		case !ok:
			errs = append(errs, lineError{line, fmt.Sprintf("environment variable %s is not set (use ${%s:-default} to give a default)", name, name)})
			out.Write(ref)
			continue
		}
		if strings.ContainsAny(val, "\r\n") {
			errs = append(errs, lineError{line, fmt.Sprintf("environment variable %s contains a newline, which is not allowed in config values", name)})
			out.Write(ref)
			continue
		}
		out.WriteString(val)
	}
	return out.Bytes(), errs
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// commentLineEnd returns the length of the line at the start of b (without its newline) when it
// is a whole-line "#" comment, else 0.
func commentLineEnd(b []byte) int {
	end := bytes.IndexByte(b, '\n')
	if end < 0 {
		end = len(b)
	}
	if t := bytes.TrimLeft(b[:end], " \t"); len(t) > 0 && t[0] == '#' {
		return end
	}
	return 0
}
