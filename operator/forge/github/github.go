// Package github is the forge.Provider for GitHub (and GitHub Enterprise): commit statuses and
// pull-request comments through the REST API with a token.
package github

import (
	"net/http"
	"strings"

	"github.com/bosun-gitops/bosun/operator/forge"
)

// DefaultAPI is github.com's API root.
const DefaultAPI = "https://api.github.com"

// Client talks to one GitHub API.
type Client struct {
	forge.RESTProvider
}

var _ forge.Provider = (*Client)(nil)

// New returns a client of the API at apiURL (DefaultAPI, or https://HOST/api/v3 for
// Enterprise) using token.
func New(apiURL, token string, hc *http.Client) *Client {
	if apiURL == "" {
		apiURL = DefaultAPI
	}
	return &Client{forge.RESTProvider{
		REST:          forge.REST{Base: strings.TrimSuffix(apiURL, "/"), Authorization: "Bearer " + token, Client: hc},
		PageSizeParam: "per_page", PageSize: 100,
	}}
}
