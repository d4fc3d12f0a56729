package gitsync

import (
	"encoding/base64"
	"net/url"
	"strings"
)

// The repository address shows in log lines, in fetch errors, in the GitSync object (which every
// node certificate may read) and in `bosun status`. Validate refuses an address that carries a
// password; RedactURL and redactSecrets are the second line: they keep a password or the token
// out of whatever is printed or stored, whatever the address or the remote's answer says.

// redactedPassword stands in for a password, as url.URL.Redacted writes it.
const redactedPassword = "xxxxx"

// RedactURL returns repo fit to print or store: the password of a URL's userinfo becomes
// "xxxxx" (url.URL.Redacted), a bare user name stays. git's scp-like form (user@host:path)
// carries no password and is returned as is, unless a user typed one in (user:secret@host:path);
// a URL that does not parse loses its whole userinfo.
func RedactURL(repo string) string {
	i := strings.Index(repo, "://")
	if i < 0 {
		return redactSCPLike(repo)
	}
	if u, err := url.Parse(repo); err == nil {
		return u.Redacted()
	}
	rest := repo[i+len("://"):]
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		return repo[:i+len("://")] + redactedPassword + rest[at:]
	}
	return repo
}

// redactSCPLike masks "secret" in "user:secret@host:path"; the userinfo ends at the first '@'
// of the part before the first '/'.
func redactSCPLike(repo string) string {
	if userinfo, rest, ok := scpUserinfo(repo); ok {
		if colon := strings.IndexByte(userinfo, ':'); colon >= 0 {
			return userinfo[:colon+1] + redactedPassword + rest
		}
	}
	return repo
}

// scpUserinfo splits "userinfo@rest" (rest keeps the '@') when the '@' comes before any '/'.
func scpUserinfo(repo string) (userinfo, rest string, ok bool) {
	head := repo
	if slash := strings.IndexByte(repo, '/'); slash >= 0 {
		head = repo[:slash]
	}
	at := strings.IndexByte(head, '@')
	if at <= 0 {
		return "", "", false
	}
	return repo[:at], repo[at:], true
}

// repoPassword returns the password repo carries: a URL's userinfo's, or the part after ':' of
// the scp-like "user:secret@host:path" that git does not accept but a user may still type.
func repoPassword(repo string) (string, bool) {
	if strings.Contains(repo, "://") {
		u, err := url.Parse(repo)
		if err != nil {
			return "", false // remoteKind refuses it, naming it redacted
		}
		return u.User.Password()
	}
	if userinfo, _, ok := scpUserinfo(repo); ok {
		if _, password, ok := strings.Cut(userinfo, ":"); ok {
			return password, true
		}
	}
	return "", false
}

// hasPassword reports whether repo carries a password.
func hasPassword(repo string) bool {
	_, ok := repoPassword(repo)
	return ok
}

// secretsOf lists the strings of cfg that must never be printed: the token, the password of
// the address (Validate refuses one, but the list is the last line), and their encodings a
// remote's answer may echo (percent-encoded, or inside a basic-auth header).
func secretsOf(cfg Config) []string {
	var secrets []string
	add := func(s string) {
		if s == "" {
			return
		}
		secrets = append(secrets, s, url.QueryEscape(s), url.PathEscape(s))
	}
	add(cfg.Token)
	if cfg.Token != "" {
		add(base64.StdEncoding.EncodeToString([]byte(basicAuthUser(cfg.Repo) + ":" + cfg.Token)))
	}
	if p, ok := repoPassword(cfg.Repo); ok {
		add(p)
	}
	return secrets
}

// redactSecrets returns err with every secret masked in its message; errors.Is and errors.As
// still see err. A nil err, or one whose message holds no secret, is returned as is.
func redactSecrets(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		if len(s) >= minSecretLen {
			clean = strings.ReplaceAll(clean, s, redactedPassword)
		}
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

// minSecretLen: masking a shorter string (a one-letter token in a test) would mangle ordinary
// words of the message; no real token or password is that short.
const minSecretLen = 4

// redactedError is an error whose message had secrets masked.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
