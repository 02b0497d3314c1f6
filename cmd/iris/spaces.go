package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	bbsbackend "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/backends/spaces"
	"github.com/iris-cf/iris/config"
)

const spacesUsage = `usage: iris spaces --config FILE list
       iris spaces --config FILE set (space GUID | org GUID | default) (diego | kubernetes)
       iris spaces --config FILE unset (space GUID | org GUID | default)

Where each space's LRPs run when Iris's BBS front has Diego behind it
(bbs.diego): list shows each space's placement, its state (diego,
kubernetes, migrating), its LRPs and desired instances on either side and
the LRPs being moved (copying: desired on the new side, awaiting its
instances; switched: the new side took over, the old copy is being
removed; failing: a step failed and is retried). set and unset change the
placement ConfigMap: new LRPs of the space go to the new side at once, and
Iris's leader migrates the running ones live; setting a space back rolls
its migration back.`

// runSpaces is `iris spaces`: the operator's view and switch of per-space
// placement. It talks to Kubernetes with the config's credentials (RBAC
// decides who may change placement) and, to list, to Diego's BBS.
func runSpaces(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("iris spaces", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "", "path to the Iris YAML config")
	flags.Usage = func() { fmt.Fprintln(stderr, spacesUsage) }
	if err := flags.Parse(args); err != nil {
		return 2
	}
	rest := flags.Args()
	if *configPath == "" || len(rest) == 0 {
		flags.Usage()
		return 2
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "iris spaces: %v\n", err)
		return 2
	}
	if !cfg.BBS.Diego.Enabled() {
		fmt.Fprintln(stderr, "iris spaces: bbs.diego is not configured: every LRP runs on Kubernetes")
		return 2
	}
	_, clientset, err := kubeClient(cfg, "iris-spaces")
	if err != nil {
		fmt.Fprintf(stderr, "iris spaces: %v\n", err)
		return 1
	}
	namespace := cfg.LeaderElection.Namespace
	if namespace == "" {
		namespace = cfg.DefaultNamespace()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	switch rest[0] {
	case "list":
		if len(rest) != 1 {
			break
		}
		if err := listSpaces(ctx, cfg, clientset, namespace, stdout); err != nil {
			fmt.Fprintf(stderr, "iris spaces: %v\n", err)
			return 1
		}
		return 0
	case "set", "unset":
		want := 3
		if rest[0] == "unset" {
			want = 2
		}
		scope, guid, value := "", "", ""
		switch {
		case len(rest) == want+1 && rest[1] != "default":
			scope, guid = rest[1], rest[2]
		case len(rest) == want && rest[1] == "default":
			scope = rest[1]
		default:
			flags.Usage()
			return 2
		}
		key, err := spaces.PlacementKey(scope, guid)
		if err != nil {
			fmt.Fprintf(stderr, "iris spaces: %v\n", err)
			return 2
		}
		var side *spaces.Side
		if rest[0] == "set" {
			value = rest[len(rest)-1]
			s, err := spaces.ParseSide(value)
			if err != nil {
				fmt.Fprintf(stderr, "iris spaces: %v\n", err)
				return 2
			}
			side = &s
		}
		if err := spaces.SetPlacement(ctx, clientset, namespace, cfg.BBS.Diego.PlacementConfigMap, key, side); err != nil {
			fmt.Fprintf(stderr, "iris spaces: %v\n", err)
			return 1
		}
		if side != nil {
			fmt.Fprintf(stdout, "%s → %s (new LRPs go there; running ones migrate live)\n", key, *side)
		} else {
			fmt.Fprintf(stdout, "%s removed\n", key)
		}
		return 0
	}
	flags.Usage()
	return 2
}

// listSpaces prints each space's placement and what runs where.
func listSpaces(ctx context.Context, cfg config.Config, clientset kubernetes.Interface, namespace string, out io.Writer) error {
	placement := spaces.StaticPlacement{Sides: map[string]spaces.Side{}}
	fallback, err := spaces.ParseSide(cfg.BBS.Diego.DefaultBackend)
	if err != nil {
		return err
	}
	placement.Fallback = fallback
	var placed []string
	cm, err := clientset.CoreV1().ConfigMaps(namespace).Get(ctx, cfg.BBS.Diego.PlacementConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("reading the placement ConfigMap: %w", err)
	default:
		for key, value := range cm.Data {
			side, err := spaces.ParseSide(value)
			if err != nil {
				fmt.Fprintf(out, "warning: %s: %v (ignored by Iris)\n", key, err)
				continue
			}
			placement.Sides[key] = side
			if len(key) > len(spaces.KeySpacePrefix) && key[:len(spaces.KeySpacePrefix)] == spaces.KeySpacePrefix {
				placed = append(placed, key[len(spaces.KeySpacePrefix):])
			}
		}
	}
	var onKubernetes []*models.DesiredLRP
	for _, ns := range cfg.WorkloadsNamespaces {
		list, err := clientset.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing StatefulSets in %s: %w", ns, err)
		}
		for i := range list.Items {
			lrp, ok, err := bbsbackend.StoredDesiredLRP(&list.Items[i])
			if err != nil {
				return err
			}
			if ok {
				onKubernetes = append(onKubernetes, lrp)
			}
		}
	}
	d := cfg.BBS.Diego
	client, err := bbsclient.NewClient(d.URL, d.CAFile, d.ClientCertFile, d.ClientKeyFile, 0, 0)
	if err != nil {
		return fmt.Errorf("diego bbs client: %w", err)
	}
	onDiego, err := client.DesiredLRPs(lager.NewLogger("iris-spaces"), "", models.DesiredLRPFilter{})
	if err != nil {
		return fmt.Errorf("listing Diego's LRPs: %w", err)
	}
	moves, err := spaces.NewConfigMapMoveStore(clientset, namespace, spaces.MigrationsConfigMap(cfg.BBS.Diego.PlacementConfigMap)).Load(ctx)
	if err != nil {
		return err
	}
	sort.Strings(placed)
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SPACE\tPLACEMENT\tSTATE\tKUBERNETES LRPS\tINSTANCES\tDIEGO LRPS\tINSTANCES\tCOPYING\tSWITCHED\tFAILING")
	for _, s := range spaces.Report(onKubernetes, onDiego, placement, placed, moves) {
		space := s.SpaceGUID
		if space == "" {
			space = "(no space_id tag)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", space, s.Placement, s.State(),
			s.KubernetesLRPs, s.KubernetesInstances, s.DiegoLRPs, s.DiegoInstances, s.Moving.Copying, s.Moving.Switched, s.Moving.Failing)
	}
	return w.Flush()
}
