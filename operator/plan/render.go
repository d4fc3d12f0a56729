package plan

import (
	"fmt"
	"strings"
)

// Headline is the one-line outcome, also used as the commit status description.
func (r *Report) Headline() string {
	if !r.Valid() {
		return "invalid: " + plural(len(r.Errors), "error")
	}
	s := r.Summary
	if s.Changes() == 0 {
		return fmt.Sprintf("valid, no changes (%d objects unchanged)", r.Unchanged)
	}
	return fmt.Sprintf("valid, %s: %d to create, %d to update, %d to delete", plural(s.Changes(), "change"), s.Create, s.Update, s.Delete)
}

func (it Item) ref() string {
	kind := strings.ToLower(it.Kind)
	if it.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", kind, it.Namespace, it.Name)
	}
	return fmt.Sprintf("%s %s", kind, it.Name)
}

func (it Item) place() string {
	switch {
	case it.File == "":
		return ""
	case it.Line > 0:
		return fmt.Sprintf("%s:%d", it.File, it.Line)
	}
	return it.File
}

var symbols = map[string]string{"create": "+", "update": "~", "adopt": "~", "delete": "-"}

// Text is the plan as `bosun plan` prints it.
func (r *Report) Text() string {
	var b strings.Builder
	if r.Commit != "" {
		fmt.Fprintf(&b, "Plan for commit %s: %s\n", short(r.Commit), r.Headline())
	} else {
		fmt.Fprintf(&b, "Plan: %s\n", r.Headline())
	}
	if !r.Valid() {
		b.WriteString("\nValidation errors (nothing would be applied):\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "  %s\n", e)
		}
		return b.String()
	}
	if len(r.Items) > 0 {
		b.WriteString("\n")
	}
	for _, it := range r.Items {
		fmt.Fprintf(&b, "%s %s %s", symbols[it.Action], it.Action, it.ref())
		if p := it.place(); p != "" {
			fmt.Fprintf(&b, " (%s)", p)
		}
		b.WriteString("\n")
		if len(it.Consequences) > 0 {
			fmt.Fprintf(&b, "    %s: %s\n", it.ref(), strings.Join(it.Consequences, ", "))
		}
		for _, d := range it.Diff {
			writeField(&b, "    ", d)
		}
	}
	return b.String()
}

func writeField(b *strings.Builder, indent string, d FieldDiff) {
	switch {
	case d.Old == "":
		fmt.Fprintf(b, "%s+ %s: %s\n", indent, d.Path, d.New)
	case d.New == "":
		fmt.Fprintf(b, "%s- %s: %s\n", indent, d.Path, d.Old)
	default:
		fmt.Fprintf(b, "%s~ %s: %s → %s\n", indent, d.Path, d.Old, d.New)
	}
}

// CommentMarker is the hidden marker that identifies Bosun's plan comment on a pull request,
// so that later pushes update it in place.
const CommentMarker = "<!-- bosun-plan -->"

// Markdown renders the plan as a pull-request comment of at most maxBytes (0: no limit). A
// long plan keeps the summary, the errors and the per-object lines and drops field diffs
// from the end, saying how many objects were cut.
func (r *Report) Markdown(maxBytes int) string {
	head := func() *strings.Builder {
		var b strings.Builder
		b.WriteString(CommentMarker + "\n")
		icon := "✅"
		if !r.Valid() {
			icon = "❌"
		}
		fmt.Fprintf(&b, "### %s Bosun plan", icon)
		if r.Commit != "" {
			fmt.Fprintf(&b, " for `%s`", short(r.Commit))
		}
		fmt.Fprintf(&b, "\n\n**%s**\n", r.Headline())
		return &b
	}
	b := head()
	if !r.Valid() {
		b.WriteString("\nValidation errors — nothing of this commit would be applied:\n\n")
		for i, e := range r.Errors {
			line := fmt.Sprintf("- `%s`\n", e)
			if maxBytes > 0 && b.Len()+len(line)+80 > maxBytes {
				fmt.Fprintf(b, "\n… and %d more errors (run `bosun plan` for all of them)\n", len(r.Errors)-i)
				break
			}
			b.WriteString(line)
		}
		return b.String()
	}
	if len(r.Items) == 0 {
		return b.String()
	}
	// Try the full rendering first, then without field diffs, then cut objects.
	for _, withDiff := range []bool{true, false} {
		body := r.markdownItems(withDiff, len(r.Items))
		if maxBytes <= 0 || b.Len()+len(body) <= maxBytes {
			b.WriteString(body)
			return b.String()
		}
	}
	n := len(r.Items)
	for n > 0 && b.Len()+len(r.markdownItems(false, n))+120 > maxBytes {
		n--
	}
	b.WriteString(r.markdownItems(false, n))
	fmt.Fprintf(b, "\n… %d more objects not shown (field diffs omitted: the plan is too long for a comment; run `bosun plan --ref` for all of it)\n", len(r.Items)-n)
	return b.String()
}

func (r *Report) markdownItems(withDiff bool, n int) string {
	var b strings.Builder
	b.WriteString("\n| | Object | Source | Consequences |\n|---|---|---|---|\n")
	for _, it := range r.Items[:n] {
		place := it.place()
		if place != "" {
			place = "`" + place + "`"
		}
		fmt.Fprintf(&b, "| %s %s | `%s` | %s | %s |\n", symbols[it.Action], it.Action, it.ref(), place, strings.Join(it.Consequences, "; "))
	}
	if !withDiff {
		return b.String()
	}
	for _, it := range r.Items[:n] {
		if len(it.Diff) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n<details><summary>%s %s</summary>\n\n```diff\n", it.action(), it.ref())
		for _, d := range it.Diff {
			if d.Old != "" {
				fmt.Fprintf(&b, "- %s: %s\n", d.Path, d.Old)
			}
			if d.New != "" {
				fmt.Fprintf(&b, "+ %s: %s\n", d.Path, d.New)
			}
		}
		b.WriteString("```\n</details>\n")
	}
	return b.String()
}

func (it Item) action() string { return it.Action }

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
