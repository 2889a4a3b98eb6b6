// Command k8s-schemas lays out the JSON schemas kubeconform validates deploy/kubernetes/ against,
// from pinned packages instead of kubeconform's default download from GitHub (which the build
// machines cannot reach):
//
//   - the Kubernetes API, from the kubernetes-validate wheel (PyPI): its "<version>-local-strict"
//     folder holds one schema per kind whose $refs point into a shared _definitions.json. Each kind
//     is written standalone, the way kubeconform reads it: the definitions it reaches (and only
//     those) copied under its own $defs, and the refs made local;
//   - KEDA's ScaledObject and TriggerAuthentication, from the CustomResourceDefinitions in KEDA's Go
//     module (config/crd/bases): each served version's openAPIV3Schema, made strict (no property
//     the CRD does not declare, unless it preserves unknown fields), as <group>/<kind>_<version>.json.
//
// Usage: k8s-schemas -wheel FILE -version v1.31.0 -keda DIR -out DIR
// Layout written: OUT/<version>-standalone-strict/<kind>-<group>-<version>.json and
// OUT/<group>/<kind>_<version>.json, kubeconform's -schema-location templates
// "{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json"
// and "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json".
package main

import (
	"archive/zip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

const (
	wheelRoot = "kubernetes_validate/kubernetes-json-schema/"
	// How a kind's schema refers to a shared definition, and how the definitions refer to each
	// other; both become the latter inside a standalone schema.
	defsRef  = "/api/_definitions.json#/$defs/"
	localRef = "#/$defs/"
)

// The CRDs of KEDA the manifests use.
var kedaCRDs = []string{"keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml"}

func main() {
	wheel := flag.String("wheel", "", "kubernetes-validate wheel")
	version := flag.String("version", "", "Kubernetes version, e.g. v1.31.0")
	keda := flag.String("keda", "", "KEDA module directory")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *wheel == "" || *version == "" || *keda == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	n, err := kubernetes(*wheel, *version, *out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8s-schemas: %s: %v\n", *wheel, err)
		os.Exit(1)
	}
	m, err := crds(*keda, *out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8s-schemas: %s: %v\n", *keda, err)
		os.Exit(1)
	}
	fmt.Printf("k8s-schemas: %d Kubernetes %s kinds and %d KEDA schemas in %s\n", n, *version, m, *out)
}

func readZip(f *zip.File) ([]byte, error) {
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func writeJSON(file string, v any) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// localize rewrites every $ref into the shared definitions as a local one and records the names
// reached in need.
func localize(v any, need map[string]bool) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			s, ok := x.(string)
			if ok && k == "$ref" && (strings.HasPrefix(s, defsRef) || strings.HasPrefix(s, localRef)) {
				name := s[strings.Index(s, localRef)+len(localRef):]
				t[k] = localRef + name
				need[name] = true
				continue
			}
			localize(x, need)
		}
	case []any:
		for _, x := range t {
			localize(x, need)
		}
	}
}

func kubernetes(wheel, version, out string) (int, error) {
	zr, err := zip.OpenReader(wheel)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	dir := wheelRoot + version + "-local-strict/"
	var defs map[string]any
	kinds := map[string]*zip.File{}
	for _, f := range zr.File {
		if !strings.HasPrefix(f.Name, dir) || !strings.HasSuffix(f.Name, ".json") {
			continue
		}
		if path.Base(f.Name) == "_definitions.json" {
			b, err := readZip(f)
			if err != nil {
				return 0, err
			}
			var doc struct {
				Defs map[string]any `json:"$defs"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				return 0, fmt.Errorf("%s: %v", f.Name, err)
			}
			defs = doc.Defs
		} else {
			kinds[path.Base(f.Name)] = f
		}
	}
	if defs == nil || len(kinds) == 0 {
		return 0, fmt.Errorf("no %s with _definitions.json (is %s in this wheel?)", dir, version)
	}
	names := make([]string, 0, len(kinds))
	for name := range kinds {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b, err := readZip(kinds[name])
		if err != nil {
			return 0, err
		}
		var schema map[string]any
		if err := json.Unmarshal(b, &schema); err != nil {
			return 0, fmt.Errorf("%s: %v", name, err)
		}
		delete(schema, "$id")
		need := map[string]bool{}
		localize(schema, need)
		// The closure: a definition copied in may refer to more.
		local := map[string]any{}
		for len(need) > 0 {
			more := map[string]bool{}
			for d := range need {
				if _, done := local[d]; done {
					continue
				}
				def, ok := defs[d]
				if !ok {
					return 0, fmt.Errorf("%s: $ref to unknown definition %s", name, d)
				}
				cp, err := deepCopy(def)
				if err != nil {
					return 0, err
				}
				localize(cp, more)
				local[d] = cp
			}
			need = more
		}
		if len(local) > 0 {
			schema["$defs"] = local
		}
		if err := writeJSON(filepath.Join(out, version+"-standalone-strict", name), schema); err != nil {
			return 0, err
		}
	}
	return len(names), nil
}

func deepCopy(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var c any
	return c, json.Unmarshal(b, &c)
}

// strict forbids properties an object schema does not declare, as kubeconform's -strict does for
// the built-in kinds, except where the CRD keeps unknown fields on purpose.
func strict(v any) {
	switch t := v.(type) {
	case map[string]any:
		_, props := t["properties"]
		_, extra := t["additionalProperties"]
		if props && !extra && t["x-kubernetes-preserve-unknown-fields"] != true {
			t["additionalProperties"] = false
		}
		for _, x := range t {
			strict(x)
		}
	case []any:
		for _, x := range t {
			strict(x)
		}
	}
}

func crds(dir, out string) (int, error) {
	n := 0
	for _, name := range kedaCRDs {
		b, err := os.ReadFile(filepath.Join(dir, "config", "crd", "bases", name))
		if err != nil {
			return 0, err
		}
		var crd struct {
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Served bool   `json:"served"`
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(b, &crd); err != nil {
			return 0, fmt.Errorf("%s: %v", name, err)
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			s := v.Schema.OpenAPIV3Schema
			strict(s)
			file := filepath.Join(out, crd.Spec.Group,
				strings.ToLower(crd.Spec.Names.Kind)+"_"+v.Name+".json")
			if err := writeJSON(file, s); err != nil {
				return 0, err
			}
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("no served version in %v", kedaCRDs)
	}
	return n, nil
}
