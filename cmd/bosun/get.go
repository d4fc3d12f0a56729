package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

type getOptions struct {
	namespace     string
	allNamespaces bool
	output        string
	selector      string
	fieldSelector string
}

func (o *getOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "", "namespace (default: the kubeconfig context's, else default)")
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list across all namespaces")
}

func newGetCmd(g *globalFlags) *cobra.Command {
	o := &getOptions{}
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List objects, or show one, as a table, YAML or JSON",
		Long: `List objects of a kind (pods, deployments, services, nodes, machines, gitsyncs, ...),
or show one by name. KIND accepts plural, singular and short names (deploy, svc, ns, ...).`,
		Example: `  bosun get deployments -A
  bosun get pod web-7d9c -o yaml
  bosun get svc -n shop -o wide`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "", "wide", "yaml", "json", "name":
			default:
				return fmt.Errorf("-o %s: want wide, yaml, json or name", o.output)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if kinds := strings.Split(args[0], ","); len(kinds) > 1 {
				if len(args) == 2 {
					return fmt.Errorf("a name goes with one kind, not %q", args[0])
				}
				for i, k := range kinds {
					if i > 0 && (o.output == "" || o.output == "wide") {
						fmt.Fprintln(cmd.OutOrStdout())
					}
					if err := o.list(cmd, c, g, k); err != nil {
						return err
					}
				}
				return nil
			}
			if len(args) == 1 {
				return o.list(cmd, c, g, args[0])
			}
			res, err := resource.Lookup(args[0])
			if err != nil {
				return err
			}
			if o.allNamespaces && res.Namespaced {
				return fmt.Errorf("a name needs a namespace: use -n NAMESPACE instead of -A")
			}
			obj, err := c.get(cmd.Context(), res, g.namespace(o.namespace), args[1])
			if err != nil {
				return err
			}
			return printObjects(cmd.OutOrStdout(), res, []resource.Object{obj}, true, o)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "output format: wide, yaml, json or name")
	cmd.Flags().StringVarP(&o.selector, "selector", "l", "", "label selector, for example app=web,tier!=db")
	cmd.Flags().StringVar(&o.fieldSelector, "field-selector", "", "field selector, for example spec.nodeName=node-1")
	return cmd
}

// printObjects prints in the requested format. A single named object prints as itself in
// yaml/json; a listing prints as a Kubernetes List, as kubectl does.
func printObjects(w io.Writer, res *resource.Resource, objs []resource.Object, single bool, o *getOptions) error {
	switch o.output {
	case "yaml", "json":
		var v any
		if single {
			v = objs[0]
		} else {
			items := make([]any, len(objs))
			for i, obj := range objs {
				items[i] = obj
			}
			v = map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}, "items": items}
		}
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return err
		}
		if o.output == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
			_, err = w.Write(b)
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case "name":
		for _, obj := range objs {
			kind := res.Singular
			if res.Group != "" {
				kind += "." + res.Group
			}
			fmt.Fprintf(w, "%s/%s\n", kind, obj.GetName())
		}
		return nil
	}
	return printTable(w, res, objs, o.allNamespaces, o.output == "wide", time.Now())
}

// list prints every object of one kind.
func (o *getOptions) list(cmd *cobra.Command, c *apiClient, g *globalFlags, kind string) error {
	res, err := resource.Lookup(kind)
	if err != nil {
		return err
	}
	ns := g.namespace(o.namespace)
	if !res.Namespaced || o.allNamespaces {
		ns = ""
	}
	q := url.Values{}
	if o.selector != "" {
		q.Set("labelSelector", o.selector)
	}
	if o.fieldSelector != "" {
		q.Set("fieldSelector", o.fieldSelector)
	}
	objs, err := c.list(cmd.Context(), res, ns, q)
	if err != nil {
		return err
	}
	sort.SliceStable(objs, func(i, j int) bool {
		if objs[i].GetNamespace() != objs[j].GetNamespace() {
			return objs[i].GetNamespace() < objs[j].GetNamespace()
		}
		return objs[i].GetName() < objs[j].GetName()
	})
	if len(objs) == 0 && (o.output == "" || o.output == "wide") {
		if ns != "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "No %s found in namespace %s.\n", res.Resource, ns)
		} else {
			fmt.Fprintf(cmd.ErrOrStderr(), "No %s found.\n", res.Resource)
		}
		return nil
	}
	return printObjects(cmd.OutOrStdout(), res, objs, false, o)
}
