package repolayout

import (
	"fmt"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/object"
)

// Loader loads successive commits of one repository and parses only what changed: the result of
// each file is kept by its path and git blob hash, so a commit that edits one file parses that
// file. The checks across files (duplicates, namespaces, machines, the Cluster) run on the whole
// set every time. Only the files of the last load are kept. A Loader is safe for concurrent use.
//
// The objects of a Set that a Loader returns are shared with later loads: callers must not
// modify them (copy with DeepCopyObject first).
type Loader struct {
	mu     sync.Mutex
	cache  map[fileKey]*fileResult
	parsed int // files the last load parsed (not served from the cache)
}

// NewLoader returns a Loader with an empty cache.
func NewLoader() *Loader {
	return &Loader{cache: map[fileKey]*fileResult{}}
}

// LoadTree is the package's LoadTree, reusing the results of files that the previous load read
// with the same path and content.
func (l *Loader) LoadTree(tree *object.Tree) (*Set, error) {
	if tree == nil {
		return nil, fmt.Errorf("loading repository: nil tree")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	before := l.cache
	set, used, err := loadWith(treeSource{tree: tree}, l.cache)
	if used != nil {
		l.parsed = 0
		for k := range used {
			if _, ok := before[k]; !ok {
				l.parsed++
			}
		}
		l.cache = used
	}
	return set, err
}

// Parsed returns how many files the last load parsed rather than took from the cache.
func (l *Loader) Parsed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.parsed
}

// CachedFiles returns how many files the cache holds (the files of the last load).
func (l *Loader) CachedFiles() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.cache)
}
