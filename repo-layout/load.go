package repolayout

import (
	"bytes"
	"fmt"
	"path"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
)

const (
	// maxFileSize bounds one manifest file; larger files are refused, not truncated.
	maxFileSize = 1 << 20
	// clusterFile holds the repository's Cluster.
	clusterFile = "bosun.yaml"
	// machinesDir holds one Machine per file.
	machinesDir = "machines"
	// ignoreFile lists gitignore-style patterns of paths to skip.
	ignoreFile = ".bosunignore"
)

// LoadDir loads the work tree at dir (the repository root or a sub-directory of it).
func LoadDir(dir string) (*Set, error) {
	return load(dirSource{root: dir})
}

// LoadTree loads a go-git tree (github.com/go-git/go-git/v5/plumbing/object.Tree), e.g. a
// commit's tree or its sub-tree for --path.
func LoadTree(tree *object.Tree) (*Set, error) {
	if tree == nil {
		return nil, fmt.Errorf("loading repository: nil tree")
	}
	return load(treeSource{tree: tree})
}

// Stats counts what a successful load read; `bosun validate` prints it.
type Stats struct {
	Objects int // Objects in the Set, plus the Cluster when bosun.yaml declares one
	Files   int // manifest files read (*.yaml, *.yml, *.json)
}

// Stats returns what the set was loaded from.
func (s *Set) Stats() Stats {
	files := map[string]bool{}
	n := len(s.Objects)
	for _, o := range s.Objects {
		files[o.File] = true
	}
	if s.clusterFile != "" {
		files[s.clusterFile] = true
		n++
	}
	return Stats{Objects: n, Files: len(files)}
}

// loader holds the state of one load.
type loader struct {
	src     source
	ignore  gitignore.Matcher
	errs    ErrorList
	files   []*fileTask // manifest files in walk order
	objects []loadedObject
	cluster *loadedObject
	// cache holds the results of files already parsed (by path and blob hash); nil when the
	// source has no content hashes. used collects the entries this load needed.
	cache, used map[fileKey]*fileResult
	// queue takes the files to parse to the workers while the walk reads the next ones (nil
	// when no workers run); parsing counts the workers.
	queue   chan *fileTask
	parsing sync.WaitGroup
}

// loadedObject is a decoded object with the document it came from, for cross-object checks.
type loadedObject struct {
	Object
	doc document
	// invalid objects have errors already; they only take part in checks across objects.
	invalid bool
}

// fileTask is one manifest file to parse, or already parsed (result set from the cache).
type fileTask struct {
	shown  string
	data   []byte
	key    fileKey
	result *fileResult
}

// fileKey identifies a file's parse result: its path as shown (errors and objects name it, and
// some kinds are only valid at some paths) and the hash of its content.
type fileKey struct {
	shown string
	hash  plumbing.Hash
}

// fileResult is what parsing one file gives; it depends only on the file's path and content,
// so it is cached across loads. Its objects are shared and never modified.
type fileResult struct {
	objects []loadedObject // Clusters included, in document order
	errs    ErrorList
}

func load(src source) (*Set, error) {
	set, _, err := loadWith(src, nil)
	return set, err
}

// loadWith loads src reusing the file results in cache (nil: no caching). It returns the
// results the load used, to be the next load's cache.
func loadWith(src source, cache map[fileKey]*fileResult) (*Set, map[fileKey]*fileResult, error) {
	l := &loader{src: src, cache: cache}
	if cache != nil {
		l.used = make(map[fileKey]*fileResult, len(cache))
	}
	if err := l.loadIgnore(); err != nil {
		return nil, nil, err
	}
	l.startParsing()
	defer l.stopParsing() // when the walk fails
	if err := l.walk("", "", false); err != nil {
		return nil, nil, err
	}
	l.parseFiles()
	set := l.finish()
	if len(l.errs) > 0 {
		sortErrors(l.errs)
		return nil, l.used, l.errs
	}
	return set, l.used, nil
}

// startParsing starts GOMAXPROCS workers that parse the files loadFile queues, so that parsing
// overlaps reading the rest of the tree.
func (l *loader) startParsing() {
	l.queue = make(chan *fileTask, 64)
	for range runtime.GOMAXPROCS(0) {
		l.parsing.Add(1)
		go func() {
			defer l.parsing.Done()
			for f := range l.queue {
				f.result = parseFile(f.shown, f.data)
				f.data = nil
			}
		}()
	}
}

// stopParsing waits for the workers to parse what was queued; it does nothing when none run.
func (l *loader) stopParsing() {
	if l.queue == nil {
		return
	}
	close(l.queue)
	l.parsing.Wait()
	l.queue = nil
}

// parseFiles waits for the workers to parse what loadFile queued or, when none ran during the
// walk, parses the files that the cache did not hold, GOMAXPROCS at a time; then it merges
// every file's result in walk order.
func (l *loader) parseFiles() {
	if l.queue == nil {
		l.startParsing()
		for _, f := range l.files {
			if f.result == nil {
				l.queue <- f
			}
		}
	}
	l.stopParsing()

	for _, f := range l.files {
		if l.used != nil && !f.key.hash.IsZero() {
			l.used[f.key] = f.result
		}
		l.errs = append(l.errs, f.result.errs...)
		for i := range f.result.objects {
			o := &f.result.objects[i]
			if o.Resource != resource.Clusters {
				l.objects = append(l.objects, *o)
				continue
			}
			if l.cluster != nil {
				l.addError(o.File, o.Line, "", "a second Cluster; a repository declares at most one, in %s (the first is at line %d)", clusterFile, l.cluster.Line)
				continue
			}
			l.cluster = o
		}
	}
	l.files = nil
}

// sortErrors sorts errs and gives errors about a whole file line 1, as Error prints them.
func sortErrors(errs ErrorList) {
	for i := range errs {
		errs[i].Line = max(errs[i].Line, 1)
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Reason < b.Reason
	})
}

func (l *loader) addError(file string, line int, field, format string, args ...any) {
	l.errs = append(l.errs, Error{File: file, Line: line, Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (l *loader) loadIgnore() error {
	e, ok, err := l.src.stat(ignoreFile)
	if err != nil {
		return fmt.Errorf("reading %s: %w", ignoreFile, err)
	}
	if !ok || e.kind != kindFile {
		return nil
	}
	data, err := l.src.readFile(ignoreFile)
	if err != nil {
		return fmt.Errorf("reading %s: %w", ignoreFile, err)
	}
	var ps []gitignore.Pattern
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ps = append(ps, gitignore.ParsePattern(line, nil))
	}
	l.ignore = gitignore.NewMatcher(ps)
	return nil
}

func (l *loader) ignored(shown string, isDir bool) bool {
	return l.ignore != nil && l.ignore.Match(strings.Split(shown, "/"), isDir)
}

func isManifest(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// walk loads the directory real, shown to the user as shown (they differ below a symlinked
// directory). viaLink is true below a symlinked directory, where links to directories are not
// followed again: that is what makes following links terminate.
func (l *loader) walk(real, shown string, viaLink bool) error {
	entries, err := l.src.readDir(real)
	if err != nil {
		return fmt.Errorf("reading directory %q: %w", displayDir(shown), err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.name, ".") {
			continue // hidden: .git, .github, .bosunignore, editor files
		}
		r, s := path.Join(real, e.name), path.Join(shown, e.name)
		if l.ignored(s, e.kind == kindDir) {
			continue
		}
		switch e.kind {
		case kindDir:
			if err := l.walk(r, s, viaLink); err != nil {
				return err
			}
		case kindFile:
			if isManifest(e.name) {
				if err := l.loadFile(r, s, e); err != nil {
					return err
				}
			}
		case kindSymlink:
			if err := l.followLink(r, s, viaLink); err != nil {
				return err
			}
		}
	}
	return nil
}

func displayDir(d string) string {
	if d == "" {
		return "."
	}
	return d
}

// followLink resolves the symlink at real (shown as shown). Links are resolved inside the
// repository only, one level deep: a link to a link, a link through a linked directory, a link
// leaving the repository and a link to one of its own ancestors are errors.
func (l *loader) followLink(real, shown string, viaLink bool) error {
	target, err := l.src.readLink(real)
	if err != nil {
		return fmt.Errorf("reading symlink %s: %w", shown, err)
	}
	if path.IsAbs(target) || strings.HasPrefix(target, "\\") {
		l.addError(shown, 0, "", "symlink to %q leaves the repository; link to a path inside it, relatively", target)
		return nil
	}
	resolved := path.Join(path.Dir(real), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		l.addError(shown, 0, "", "symlink to %q leaves the repository; link to a path inside it", target)
		return nil
	}
	if resolved == "." {
		resolved = ""
	}
	// Every directory on the way must be a real directory: a link through another link could
	// leave the repository or loop.
	parts := strings.Split(resolved, "/")
	for i := 1; i < len(parts); i++ {
		e, ok, err := l.src.stat(strings.Join(parts[:i], "/"))
		if err != nil {
			return fmt.Errorf("resolving symlink %s: %w", shown, err)
		}
		if ok && e.kind == kindSymlink {
			l.addError(shown, 0, "", "symlink to %q goes through another symlink (%s); only one level of links is followed", target, strings.Join(parts[:i], "/"))
			return nil
		}
	}
	e, ok, err := l.src.stat(resolved)
	if err != nil {
		return fmt.Errorf("resolving symlink %s: %w", shown, err)
	}
	switch {
	case !ok:
		if isManifest(shown) {
			l.addError(shown, 0, "", "symlink target %q does not exist", target)
		}
	case e.kind == kindSymlink:
		l.addError(shown, 0, "", "symlink to %q points to another symlink; only one level of links is followed", target)
	case e.kind == kindFile:
		if isManifest(shown) {
			return l.loadFile(resolved, shown, e)
		}
	case e.kind == kindDir:
		if resolved == "" || resolved == path.Dir(real) || strings.HasPrefix(real, resolved+"/") {
			l.addError(shown, 0, "", "symlink to %q points to a directory that contains it (a loop)", target)
			return nil
		}
		if viaLink {
			l.addError(shown, 0, "", "symlink to directory %q inside a symlinked directory is not followed; only one level of links is followed", target)
			return nil
		}
		return l.walk(resolved, shown, true)
	}
	return nil
}

// loadFile queues one manifest file (e describes real) for parsing, unless the cache holds it.
func (l *loader) loadFile(real, shown string, e entry) error {
	key := fileKey{shown: shown, hash: e.hash}
	if r, ok := l.cache[key]; ok && !key.hash.IsZero() {
		l.files = append(l.files, &fileTask{shown: shown, key: key, result: r})
		return nil
	}
	data, size, err := l.src.readEntry(real, e)
	if err != nil {
		return fmt.Errorf("reading %s: %w", shown, err)
	}
	if size > maxFileSize {
		l.addError(shown, 0, "", "file is %d bytes, over the 1 MiB limit; split it into several files", size)
		return nil
	}
	if len(data) > maxFileSize {
		l.addError(shown, 0, "", "file is over the 1 MiB limit; split it into several files")
		return nil
	}
	f := &fileTask{shown: shown, data: data, key: key}
	l.files = append(l.files, f)
	if l.queue != nil {
		l.queue <- f
	}
	return nil
}

// parseFile decodes one manifest file; it uses no state of the load, so files are parsed in
// parallel.
func parseFile(shown string, data []byte) *fileResult {
	r := &fileResult{}
	docs, errs := splitDocuments(shown, data, strings.ToLower(path.Ext(shown)) == ".json")
	r.errs = append(r.errs, errs...)
	for _, doc := range docs {
		r.loadDocument(doc)
	}
	return r
}

// crossFields are the fields that the checks across objects report on: their lines are kept
// when a document's YAML nodes are released.
var crossFields = []string{"metadata.name", "metadata.namespace"}

// loadDocument decodes one document (or, for a List, each of its items).
func (r *fileResult) loadDocument(doc document) {
	items, isList, errs := listItems(doc)
	r.errs = append(r.errs, errs...)
	if isList {
		for _, item := range items {
			r.loadDocument(item)
		}
		return
	}
	if len(errs) > 0 {
		return
	}
	res, obj, errs := decodeDocument(doc)
	r.errs = append(r.errs, errs...)
	if obj == nil {
		return
	}
	// The object keeps its document's JSON, which the next load's cache holds too: a copy of
	// its own size, not the parse's buffer, which has room to spare (up to twice the size).
	raw := bytes.Clone(doc.raw)
	// Keep only what the checks across objects need: the YAML nodes and the generic value are
	// the bulk of a document's memory. Machines and the Cluster keep their nodes
	// (checkMachines and checkWebhookSecret report on several fields; there are few of them).
	if res != resource.Machines && res != resource.Clusters {
		fields := crossFields
		if svc, ok := obj.(*corev1.Service); ok {
			fields = append(slices.Clip(fields), serviceFields(svc)...)
		}
		doc = doc.released(fields)
	}
	doc.value, doc.raw = nil, nil
	r.objects = append(r.objects, loadedObject{Object: Object{Resource: res, Object: obj, File: doc.file, Line: doc.line, Raw: raw}, doc: doc, invalid: len(errs) > 0})
}

// finish runs the checks that span objects and builds the Set.
func (l *loader) finish() *Set {
	cluster := &bosunv1.Cluster{}
	if l.cluster != nil && !l.cluster.invalid {
		cluster = l.cluster.Object.Object.(*bosunv1.Cluster)
	} else {
		cluster.Name = "default"
		resource.Clusters.SetTypeMeta(cluster)
		defaultCluster(cluster)
	}
	l.checkDuplicates()
	l.checkNamespaces()
	l.checkServiceAddresses(cluster)
	l.checkMachines(cluster)
	l.checkWebhookSecret()

	set := &Set{Cluster: cluster, Objects: make([]Object, 0, len(l.objects))}
	if l.cluster != nil && !l.cluster.invalid {
		set.clusterFile = l.cluster.File
	}
	for _, o := range l.objects {
		set.Objects = append(set.Objects, o.Object)
	}
	sort.SliceStable(set.Objects, func(i, j int) bool {
		a, b := set.Objects[i], set.Objects[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return set
}

type objectKey struct {
	kind, namespace, name string
}

func keyOf(o Object) objectKey {
	return objectKey{o.Resource.Kind, o.Object.GetNamespace(), o.Object.GetName()}
}

func describe(k objectKey) string {
	if k.namespace == "" {
		return fmt.Sprintf("%s %s", k.kind, k.name)
	}
	return fmt.Sprintf("%s %s/%s", k.kind, k.namespace, k.name)
}

func (l *loader) checkDuplicates() {
	first := map[objectKey]loadedObject{}
	for _, o := range l.objects {
		k := keyOf(o.Object)
		if prev, dup := first[k]; dup {
			l.errs = append(l.errs, o.doc.errorf("metadata.name", "%s is declared twice: here and at %s:%d; keep one",
				describe(k), prev.File, prev.Line))
			continue
		}
		first[k] = o
	}
}

// builtinNamespaces exist in every cluster without a manifest.
func builtinNamespace(ns string) bool {
	switch ns {
	case "default", "kube-system", "kube-public", "kube-node-lease":
		return true
	}
	return false
}

func (l *loader) checkNamespaces() {
	declared := map[string]bool{}
	for _, o := range l.objects {
		if o.Resource == resource.Namespaces {
			declared[o.Object.Object.GetName()] = true
		}
	}
	for _, o := range l.objects {
		ns := o.Object.Object.GetNamespace()
		if !o.Resource.Namespaced || builtinNamespace(ns) || declared[ns] {
			continue
		}
		l.errs = append(l.errs, o.doc.errorf("metadata.namespace",
			"namespace %q is not declared in the repository; add a Namespace manifest (apiVersion: v1, kind: Namespace, metadata.name: %s)", ns, ns))
	}
}
