// Package gitea is the forge.Provider for Gitea (and Forgejo): commit statuses and pull-request
// comments through its REST API (/api/v1) with an access token.
package gitea

import (
	"net/http"
	"strings"

	"github.com/bosun-gitops/bosun/operator/forge"
)

// Client talks to one Gitea server.
type Client struct {
	forge.RESTProvider
}

var _ forge.Provider = (*Client)(nil)

// New returns a client of the Gitea at baseURL (for example http://127.0.0.1:3000) using token.
func New(baseURL, token string, hc *http.Client) *Client {
	// No paging: Gitea's ListIssueComments (1.26) ignores page and limit and returns every
	// comment of the pull request.
	return &Client{forge.RESTProvider{
		REST: forge.REST{Base: strings.TrimSuffix(baseURL, "/") + "/api/v1", Authorization: "token " + token, Client: hc},
	}}
}
