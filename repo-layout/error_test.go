package repolayout

import "testing"

// TestErrorAlwaysHasLine checks that an error about a whole file still prints as file:line, the
// form editors and CI annotations parse.
func TestErrorAlwaysHasLine(t *testing.T) {
	for _, c := range []struct {
		err  Error
		want string
	}{
		{Error{File: "big.yaml", Reason: "file is over the 1 MiB limit"}, "big.yaml:1: file is over the 1 MiB limit"},
		{Error{File: "a.yaml", Line: 7, Field: "spec.replicas", Reason: "Invalid value"}, "a.yaml:7: spec.replicas: Invalid value"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("%#v.Error() = %q, want %q", c.err, got, c.want)
		}
	}
}
