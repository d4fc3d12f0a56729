// Package github is the forge.Provider for GitHub (and GitHub Enterprise): commit statuses and
// pull-request comments through the REST API with a token.
package github

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/bosun-gitops/bosun/operator/forge"
)

// DefaultAPI is github.com's API root.
const DefaultAPI = "https://api.github.com"

// Client talks to one GitHub API.
type Client struct {
	rest forge.REST
}

var _ forge.Provider = (*Client)(nil)

// New returns a client of the API at apiURL (DefaultAPI, or https://HOST/api/v3 for
// Enterprise) using token.
func New(apiURL, token string, hc *http.Client) *Client {
	if apiURL == "" {
		apiURL = DefaultAPI
	}
	return &Client{rest: forge.REST{Base: strings.TrimSuffix(apiURL, "/"), Authorization: "Bearer " + token, Client: hc}}
}

// SetStatus implements forge.Provider.
func (c *Client) SetStatus(ctx context.Context, repo, sha string, st forge.Status) error {
	if err := c.rest.Do(ctx, http.MethodPost, fmt.Sprintf("/repos/%s/statuses/%s", repo, sha), forge.NewStatusBody(st), nil); err != nil {
		return fmt.Errorf("setting %s status on %s: %w", st.Context, sha, err)
	}
	return nil
}

// UpsertComment implements forge.Provider.
func (c *Client) UpsertComment(ctx context.Context, repo string, number int, marker, body string) error {
	for page := 1; ; page++ {
		var comments []forge.Comment
		if err := c.rest.Do(ctx, http.MethodGet, fmt.Sprintf("/repos/%s/issues/%d/comments?page=%d&per_page=100", repo, number, page), nil, &comments); err != nil {
			return fmt.Errorf("listing comments of #%d: %w", number, err)
		}
		if old, ok := forge.FindComment(comments, marker); ok {
			if err := c.rest.Do(ctx, http.MethodPatch, fmt.Sprintf("/repos/%s/issues/comments/%d", repo, old.ID), map[string]string{"body": body}, nil); err != nil {
				return fmt.Errorf("editing comment %d of #%d: %w", old.ID, number, err)
			}
			return nil
		}
		if len(comments) < 100 {
			break
		}
	}
	if err := c.rest.Do(ctx, http.MethodPost, fmt.Sprintf("/repos/%s/issues/%d/comments", repo, number), map[string]string{"body": body}, nil); err != nil {
		return fmt.Errorf("commenting on #%d: %w", number, err)
	}
	return nil
}
