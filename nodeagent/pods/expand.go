package pods

import "strings"

// expand replaces $(VAR) references in input with their value from vars, as Kubernetes does for
// env values, command and args: "$$" escapes a "$", and unknown or malformed references are
// kept as written.
func expand(input string, vars map[string]string) string {
	if !strings.Contains(input, "$") {
		return input
	}
	var buf strings.Builder
	checkpoint := 0
	for cursor := 0; cursor < len(input); cursor++ {
		if input[cursor] != '$' || cursor+1 >= len(input) {
			continue
		}
		buf.WriteString(input[checkpoint:cursor])
		read, isVar, advance := readVariableName(input[cursor+1:])
		if isVar {
			if v, ok := vars[read]; ok {
				buf.WriteString(v)
			} else {
				buf.WriteString("$(" + read + ")")
			}
		} else {
			buf.WriteString(read)
		}
		cursor += advance
		checkpoint = cursor + 1
	}
	return buf.String() + input[checkpoint:]
}

// readVariableName reads what follows a "$": the name of "$(NAME)", or the literal text to keep,
// and how many bytes were consumed.
func readVariableName(input string) (string, bool, int) {
	switch input[0] {
	case '$':
		return "$", false, 1
	case '(':
		for i := 1; i < len(input); i++ {
			if input[i] == ')' {
				return input[1:i], true, i + 1
			}
		}
		return "$(", false, 1
	default:
		return "$" + string(input[0]), false, 1
	}
}
