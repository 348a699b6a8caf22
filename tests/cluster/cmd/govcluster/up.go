package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Loopback ports of the local cloud. Fixed so kubeconfigs and docs stay valid across runs.
const (
	apiserverPort   = 16443
	etcdClientPort  = 12379
	etcdPeerPort    = 12380
	ledgerEtcdPort  = 12381
	ledgerEtcdPeer  = 12382
	serviceIPRange  = "10.96.0.0/16"
	readyTimeout    = 3 * time.Minute
	shutdownTimeout = 20 * time.Second
)

// component is one process of the local cloud; they start in this order and stop in reverse.
type component struct {
	name string
	args []string
	// port answers once the component listens (0: no port to wait on).
	port int
	// credential runs the process as another user (PostgreSQL refuses root); nil: as us.
	credential *syscall.Credential
	// dir is the working directory (empty: ours).
	dir string
	// ready, if set, waits after the port listens until the component really serves.
	ready func(timeout time.Duration) error
}

// controllers run by kube-controller-manager: what a tenant platform relies on.
var controllers = []string{
	"namespace-controller", "resourcequota-controller", "garbage-collector-controller",
	"deployment-controller", "replicaset-controller", "statefulset-controller", "job-controller",
	"disruption-controller", "endpoints-controller", "endpointslice-controller",
	"serviceaccount-controller", "serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller", "pod-garbage-collector-controller",
	"clusterrole-aggregation-controller", "ttl-after-finished-controller",
}

type upOptions struct {
	stateDir, binDir              string
	reuse                         bool
	nodes                         int
	nodeCPU, nodeMemory, nodePods string
}

func runUp(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	var o upOptions
	fs.StringVar(&o.stateDir, "state-dir", "", "where PKI, data, logs, pids and kubeconfig live")
	fs.StringVar(&o.binDir, "bin-dir", "", "where kube-apiserver, kube-controller-manager, kube-scheduler and govcluster are")
	fs.BoolVar(&o.reuse, "reuse", false, "if a healthy instance already runs from this state dir, use it")
	fs.IntVar(&o.nodes, "nodes", 3, "fake nodes")
	fs.StringVar(&o.nodeCPU, "node-cpu", "32", "allocatable cpu per fake node")
	fs.StringVar(&o.nodeMemory, "node-memory", "128Gi", "allocatable memory per fake node")
	fs.StringVar(&o.nodePods, "node-pods", "500", "allocatable pods per fake node")
	_ = fs.Parse(args)
	if o.stateDir == "" || o.binDir == "" {
		return errors.New("--state-dir and --bin-dir are required")
	}
	var err error
	if o.stateDir, err = filepath.Abs(o.stateDir); err != nil {
		return err
	}
	if o.binDir, err = filepath.Abs(o.binDir); err != nil {
		return err
	}
	pods, err := resource.ParseQuantity(o.nodePods)
	if err != nil {
		return fmt.Errorf("--node-pods %q: %w", o.nodePods, err)
	}
	// What the fakelet started below must show: nodes of an earlier run stay in etcd,
	// Ready and with their old size, until it registers them again.
	want := &fakeNodes{count: o.nodes, pods: pods}

	running := runningComponents(o.stateDir)
	if len(running) > 0 {
		if o.reuse {
			// A running control plane keeps the nodes it started with: any size will do.
			if err := waitReady(o.stateDir, 30*time.Second, nil); err == nil {
				fmt.Printf("reusing the local control plane in %s (%s)\n", o.stateDir, strings.Join(running, ", "))
				return printEnv(o.stateDir)
			}
			fmt.Println("an earlier instance is not healthy; restarting it")
		} else {
			return fmt.Errorf("components already run from %s (%s): pass --reuse, or stop them with 'govcluster down'", o.stateDir, strings.Join(running, ", "))
		}
		if err := stopAll(o.stateDir); err != nil {
			return err
		}
	}

	for _, d := range []string{"logs", "pids", "data"} {
		if err := os.MkdirAll(filepath.Join(o.stateDir, d), 0o755); err != nil {
			return err
		}
	}
	p, err := loadOrCreatePKI(filepath.Join(o.stateDir, "pki"))
	if err != nil {
		return fmt.Errorf("preparing certificates: %w", err)
	}
	if err := prepareAuthn(o.stateDir, p); err != nil {
		return err
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", apiserverPort)
	for _, id := range []struct{ file, user, group string }{
		{"admin", "govbroker-admin", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		{"fakelet", "govbroker-fakelet", "system:masters"},
	} {
		var groups []string
		if id.group != "" {
			groups = []string{id.group}
		}
		if err := p.issue(id.file, id.user, groups, false, nil, nil); err != nil {
			return err
		}
		if err := p.writeKubeconfig(filepath.Join(o.stateDir, id.file+".kubeconfig"), server, id.file); err != nil {
			return err
		}
	}
	adminKubeconfig := filepath.Join(o.stateDir, "kubeconfig")
	if err := p.writeKubeconfig(adminKubeconfig, server, "admin"); err != nil {
		return err
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin := func(name string) string { return filepath.Join(o.binDir, name) }
	data := func(name string) string { return filepath.Join(o.stateDir, "data", name) }
	// The data servers (dataservers.go): initdb on first start, configuration, credentials.
	postgres, err := preparePostgres(o.stateDir)
	if err != nil {
		return err
	}
	redis, err := prepareRedis(o.stateDir)
	if err != nil {
		return err
	}
	components := []component{
		{name: "etcd", port: etcdClientPort, args: []string{self, "etcd", "--name", "cluster", "--data-dir", data("etcd"),
			"--client-port", strconv.Itoa(etcdClientPort), "--peer-port", strconv.Itoa(etcdPeerPort)}},
		{name: "ledger-etcd", port: ledgerEtcdPort, args: []string{self, "etcd", "--name", "ledger", "--data-dir", data("ledger-etcd"),
			"--client-port", strconv.Itoa(ledgerEtcdPort), "--peer-port", strconv.Itoa(ledgerEtcdPeer), "--fsync=true"}},
		postgres,
		redis,
		// The token authentication webhook (authn.go): bearer tokens minted by "govcluster token".
		{name: "authn", port: authnPort, args: []string{self, "authn", "--state-dir", o.stateDir, "--port", strconv.Itoa(authnPort)}},
		{name: "kube-apiserver", port: apiserverPort, args: []string{bin("kube-apiserver"),
			"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdClientPort),
			"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
			"--secure-port", strconv.Itoa(apiserverPort),
			"--tls-cert-file", p.path("apiserver.crt"), "--tls-private-key-file", p.path("apiserver.key"),
			"--client-ca-file", p.path("ca.crt"),
			"--authentication-token-webhook-config-file", authnKubeconfigPath(o.stateDir),
			"--authentication-token-webhook-version", "v1",
			"--authentication-token-webhook-cache-ttl", authnCacheTTL,
			"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file", p.path("sa.pub"),
			"--service-account-signing-key-file", p.path("sa.key"),
			"--service-cluster-ip-range", serviceIPRange,
			"--authorization-mode", "Node,RBAC",
			"--allow-privileged=true",
			// The loopback advertise address cannot be an endpoint of the kubernetes Service.
			"--endpoint-reconciler-type", "none",
			"--max-requests-inflight", "800", "--max-mutating-requests-inflight", "400",
			// /debug/pprof only when asked (GOVCLUSTER_APISERVER_PROFILING=1), to profile
			// the control plane under a benchmark.
			"--profiling=" + strconv.FormatBool(os.Getenv("GOVCLUSTER_APISERVER_PROFILING") == "1"),
			"--cert-dir", filepath.Join(o.stateDir, "pki", "apiserver-generated"),
		}},
		{name: "kube-controller-manager", args: []string{bin("kube-controller-manager"),
			"--kubeconfig", filepath.Join(o.stateDir, "controller-manager.kubeconfig"),
			"--authentication-kubeconfig", filepath.Join(o.stateDir, "controller-manager.kubeconfig"),
			"--authorization-kubeconfig", filepath.Join(o.stateDir, "controller-manager.kubeconfig"),
			"--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0",
			"--service-account-private-key-file", p.path("sa.key"),
			"--root-ca-file", p.path("ca.crt"),
			"--use-service-account-credentials=true",
			"--controllers", strings.Join(controllers, ","),
			"--kube-api-qps", "200", "--kube-api-burst", "400",
			"--concurrent-namespace-syncs", "10", "--concurrent-resource-quota-syncs", "10",
			"--concurrent-deployment-syncs", "10", "--concurrent-replicaset-syncs", "10",
			"--concurrent-gc-syncs", "20",
		}},
		{name: "kube-scheduler", args: []string{bin("kube-scheduler"),
			"--kubeconfig", filepath.Join(o.stateDir, "scheduler.kubeconfig"),
			"--authentication-kubeconfig", filepath.Join(o.stateDir, "scheduler.kubeconfig"),
			"--authorization-kubeconfig", filepath.Join(o.stateDir, "scheduler.kubeconfig"),
			"--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0",
		}},
		{name: "fakelet", args: []string{self, "fakelet",
			"--kubeconfig", filepath.Join(o.stateDir, "fakelet.kubeconfig"),
			"--nodes", strconv.Itoa(o.nodes), "--node-cpu", o.nodeCPU, "--node-memory", o.nodeMemory, "--node-pods", o.nodePods,
		}},
	}
	for _, c := range components {
		if _, err := os.Stat(c.args[0]); err != nil {
			return fmt.Errorf("%s is not built (%v): run the build first (cargo xtask cluster build)", c.args[0], err)
		}
	}

	for _, port := range []int{etcdClientPort, etcdPeerPort, ledgerEtcdPort, ledgerEtcdPeer, postgresPort, redisPort, authnPort, apiserverPort} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return fmt.Errorf("port 127.0.0.1:%d is taken by another process (another local cloud from a different state dir? stop it with its 'govcluster down'): %w", port, err)
		}
		l.Close()
	}

	start := time.Now()
	for _, c := range components {
		if err := startComponent(o.stateDir, c); err != nil {
			_ = stopAll(o.stateDir)
			return err
		}
		if c.port != 0 {
			if err := waitPort(c.port, 60*time.Second, o.stateDir, c.name); err != nil {
				_ = stopAll(o.stateDir)
				return err
			}
		}
		if c.ready != nil {
			if err := c.ready(60 * time.Second); err != nil {
				_ = stopAll(o.stateDir)
				return err
			}
		}
		if c.name == "kube-apiserver" {
			// The control-plane components after the API server need it to answer first.
			if err := waitAPIHealthy(adminKubeconfig, 90*time.Second); err != nil {
				_ = stopAll(o.stateDir)
				return fmt.Errorf("kube-apiserver: %w (see %s)", err, logPath(o.stateDir, c.name))
			}
		}
	}
	if err := waitReady(o.stateDir, readyTimeout, want); err != nil {
		_ = stopAll(o.stateDir)
		return err
	}
	if err := writeEnv(o.stateDir, want); err != nil {
		return err
	}
	fmt.Printf("local control plane ready in %.1fs\n", time.Since(start).Seconds())
	return printEnv(o.stateDir)
}

func logPath(stateDir, name string) string { return filepath.Join(stateDir, "logs", name+".log") }
func pidPath(stateDir, name string) string { return filepath.Join(stateDir, "pids", name+".pid") }

// startComponent launches a detached process (its own session) so it outlives "up".
func startComponent(stateDir string, c component) error {
	logFile, err := os.OpenFile(logPath(stateDir, c.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "\n=== %s starting %s\n", time.Now().Format(time.RFC3339), strings.Join(c.args, " "))
	cmd := exec.Command(c.args[0], c.args[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: c.credential}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", c.name, err)
	}
	fmt.Printf("  started %-24s pid %-7d log %s\n", c.name, cmd.Process.Pid, logPath(stateDir, c.name))
	if err := os.WriteFile(pidPath(stateDir, c.name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	return cmd.Process.Release()
}

func waitPort(port int, timeout time.Duration, stateDir, name string) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			conn.Close()
			return nil
		}
		if !alive(stateDir, name) {
			return fmt.Errorf("%s exited during start-up; its log %s ends with:\n%s", name, logPath(stateDir, name), tail(logPath(stateDir, name), 15))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on 127.0.0.1:%d within %s (see %s)", name, port, timeout, logPath(stateDir, name))
}

func waitAPIHealthy(kubeconfig string, timeout time.Duration) error {
	client, err := adminClient(kubeconfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		_, last = client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if last == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("API not ready within %s: %v", timeout, last)
}

// fakeNodes is what the fake nodes of a fresh start must show before it is ready: nodes
// fake-node-0 to fake-node-<count-1>, each with capacity and allocatable pods equal to
// pods (what --nodes and --node-pods asked for).
type fakeNodes struct {
	count int
	pods  resource.Quantity
}

// waitReady returns once the API answers, the default service account exists (so the
// controller manager works) and every fake node is Ready (and, given want, registered
// by this start's fakelet with the size asked for).
func waitReady(stateDir string, timeout time.Duration, want *fakeNodes) error {
	kubeconfig := filepath.Join(stateDir, "kubeconfig")
	if err := waitAPIHealthy(kubeconfig, timeout); err != nil {
		return err
	}
	client, err := adminClient(kubeconfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var why string
	for ctx.Err() == nil {
		for _, name := range []string{"kube-controller-manager", "kube-scheduler", "fakelet", "etcd", "ledger-etcd", "postgres", "redis", "authn"} {
			if !alive(stateDir, name) {
				return fmt.Errorf("%s is not running; its log %s ends with:\n%s", name, logPath(stateDir, name), tail(logPath(stateDir, name), 15))
			}
		}
		why = readiness(ctx, client, want)
		if why == "" {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("control plane not ready within %s: %s", timeout, why)
}

// readiness says what is not ready yet, or "" when all is; want, when given, is the
// fake nodes the fakelet was started with.
func readiness(ctx context.Context, client kubernetes.Interface, want *fakeNodes) string {
	if _, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return "the default service account does not exist yet (serviceaccount controller)"
		}
		return err.Error()
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: fakeNodeLabel + "=true"})
	if err != nil {
		return err.Error()
	}
	if len(nodes.Items) == 0 {
		return "no fake node registered yet"
	}
	for _, n := range nodes.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return fmt.Sprintf("node %s is not Ready", n.Name)
		}
	}
	if want != nil {
		return nodeSizeMismatch(nodes.Items, want)
	}
	return ""
}

// nodeSizeMismatch says which of the wanted fake nodes is missing or does not show the
// wanted pods yet, or "" when every one does.
func nodeSizeMismatch(nodes []corev1.Node, want *fakeNodes) string {
	byName := make(map[string]*corev1.Node, len(nodes))
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	for i := range want.count {
		name := fmt.Sprintf("fake-node-%d", i)
		n, ok := byName[name]
		if !ok {
			return fmt.Sprintf("node %s is not registered yet", name)
		}
		capacity, allocatable := n.Status.Capacity[corev1.ResourcePods], n.Status.Allocatable[corev1.ResourcePods]
		if capacity.Cmp(want.pods) != 0 || allocatable.Cmp(want.pods) != 0 {
			return fmt.Sprintf("node %s shows %s pods (capacity) and %s (allocatable), not the %s asked for: the fakelet has not registered it again yet",
				name, capacity.String(), allocatable.String(), want.pods.String())
		}
	}
	return ""
}

func adminClient(kubeconfig string) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 5 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// writeEnv records where everything is, and the fake nodes' count and pods each (what
// readiness waited for), for the test support and for people.
func writeEnv(stateDir string, nodes *fakeNodes) error {
	lines := []string{
		"KUBECONFIG=" + filepath.Join(stateDir, "kubeconfig"),
		fmt.Sprintf("GOVBROKER_API_SERVER=https://127.0.0.1:%d", apiserverPort),
		fmt.Sprintf("GOVBROKER_CLUSTER_ETCD=http://127.0.0.1:%d", etcdClientPort),
		fmt.Sprintf("GOVBROKER_LEDGER_ETCD=http://127.0.0.1:%d", ledgerEtcdPort),
		"GOVBROKER_CLUSTER_CA=" + filepath.Join(stateDir, "pki", "ca.crt"),
		fmt.Sprintf("GOVBROKER_AUTHN_WEBHOOK=https://127.0.0.1:%d/authenticate", authnPort),
		"GOVBROKER_AUTHN_TOKENS=" + tokensPath(stateDir),
		fmt.Sprintf("GOVBROKER_POSTGRES=127.0.0.1:%d", postgresPort),
		"GOVBROKER_POSTGRES_ADMIN_FILE=" + postgresAdminPath(stateDir),
		fmt.Sprintf("GOVBROKER_REDIS=127.0.0.1:%d", redisPort),
		"GOVBROKER_REDIS_ADMIN_FILE=" + redisAdminPath(stateDir),
		"GOVBROKER_CLUSTER_LOGS=" + filepath.Join(stateDir, "logs"),
		fmt.Sprintf("GOVBROKER_FAKE_NODES=%d", nodes.count),
		"GOVBROKER_FAKE_NODE_PODS=" + nodes.pods.String(),
	}
	return os.WriteFile(filepath.Join(stateDir, "cluster.env"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func printEnv(stateDir string) error {
	b, err := os.ReadFile(filepath.Join(stateDir, "cluster.env"))
	if err != nil {
		return err
	}
	fmt.Print(string(b))
	return nil
}

// componentOrder lists the pid files in start order.
var componentOrder = []string{"etcd", "ledger-etcd", "postgres", "redis", "authn", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "fakelet"}

func readPid(stateDir, name string) int {
	b, err := os.ReadFile(pidPath(stateDir, name))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func alive(stateDir, name string) bool {
	pid := readPid(stateDir, name)
	if pid <= 0 {
		return false
	}
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie or a recycled pid is not our component.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat))
	return len(fields) > 2 && fields[2] != "Z"
}

func runningComponents(stateDir string) []string {
	var running []string
	for _, name := range componentOrder {
		if alive(stateDir, name) {
			running = append(running, name)
		}
	}
	return running
}

// stopAll stops the processes added with "spawn" (govbroker's own), then the components
// in reverse start order: SIGTERM, then SIGKILL after a grace period.
func stopAll(stateDir string) error {
	order := spawnedNames(stateDir)
	for i := len(componentOrder) - 1; i >= 0; i-- {
		order = append(order, componentOrder[i])
	}
	for _, name := range order {
		pid := readPid(stateDir, name)
		if pid > 0 && alive(stateDir, name) {
			_ = syscall.Kill(pid, stopSignal(name))
			deadline := time.Now().Add(shutdownTimeout)
			for alive(stateDir, name) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if alive(stateDir, name) {
				fmt.Printf("  %s did not stop within %s; killing it\n", name, shutdownTimeout)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			fmt.Printf("  stopped %s\n", name)
		}
		_ = os.Remove(pidPath(stateDir, name))
	}
	return nil
}

// spawnedNames lists the pid files of processes started with "spawn".
func spawnedNames(stateDir string) []string {
	entries, _ := os.ReadDir(filepath.Join(stateDir, "pids"))
	var names []string
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".pid")
		if !slices.Contains(componentOrder, name) {
			names = append(names, name)
		}
	}
	return names
}

// runSpawn starts one more supervised process (the operator, the API...) beside the
// control plane: detached, logging to DIR/logs/NAME.log, stopped by "down". A process
// of that name that still runs is stopped first.
func runSpawn(args []string) error {
	fs := flag.NewFlagSet("spawn", flag.ExitOnError)
	stateDir := fs.String("state-dir", "", "state directory given to 'up'")
	name := fs.String("name", "", "name of the process (log and pid file)")
	port := fs.Int("wait-port", 0, "wait until this loopback port listens")
	_ = fs.Parse(args)
	if *stateDir == "" || *name == "" || fs.NArg() == 0 {
		return errors.New("usage: govcluster spawn --state-dir DIR --name NAME [--wait-port P] -- COMMAND [ARGS...]")
	}
	if slices.Contains(componentOrder, *name) {
		return fmt.Errorf("%q is a control-plane component name", *name)
	}
	if pid := readPid(*stateDir, *name); pid > 0 && alive(*stateDir, *name) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(shutdownTimeout)
		for alive(*stateDir, *name) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(*stateDir, *name) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err := startComponent(*stateDir, component{name: *name, args: fs.Args()}); err != nil {
		return err
	}
	if *port != 0 {
		return waitPort(*port, 60*time.Second, *stateDir, *name)
	}
	return nil
}

func runDown(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	stateDir := fs.String("state-dir", "", "state directory given to 'up'")
	purge := fs.Bool("purge", false, "also delete the data (etcd, PostgreSQL and Redis contents and admin credentials, certificates, minted tokens)")
	_ = fs.Parse(args)
	if *stateDir == "" {
		return errors.New("--state-dir is required")
	}
	if err := stopAll(*stateDir); err != nil {
		return err
	}
	if *purge {
		if err := purgePostgres(*stateDir); err != nil {
			return err
		}
		for _, d := range []string{"data", "pki", "pids", "tokens", "postgres-admin", "redis-admin"} {
			if err := os.RemoveAll(filepath.Join(*stateDir, d)); err != nil {
				return err
			}
		}
		fmt.Println("  removed data (etcd, PostgreSQL, Redis), admin credentials, certificates and minted tokens")
	}
	return nil
}

func runStatus(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	stateDir := fs.String("state-dir", "", "state directory given to 'up'")
	_ = fs.Parse(args)
	if *stateDir == "" {
		return errors.New("--state-dir is required")
	}
	for _, name := range componentOrder {
		state := "stopped"
		if alive(*stateDir, name) {
			state = fmt.Sprintf("running (pid %d)", readPid(*stateDir, name))
		}
		fmt.Printf("%-24s %s\n", name, state)
	}
	if len(runningComponents(*stateDir)) == 0 {
		return errors.New("not running")
	}
	client, err := adminClient(filepath.Join(*stateDir, "kubeconfig"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if why := readiness(ctx, client, nil); why != "" {
		return fmt.Errorf("not ready: %s", why)
	}
	v, err := client.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	fmt.Printf("ready: Kubernetes %s\n", v.GitVersion)
	return nil
}

// runUser writes a kubeconfig for an arbitrary user and groups, authenticated by a client
// certificate from the local CA: the easiest way to make test identities.
func runUser(args []string) error {
	fs := flag.NewFlagSet("user", flag.ExitOnError)
	stateDir := fs.String("state-dir", "", "state directory given to 'up'")
	name := fs.String("name", "", "user name (the certificate's common name)")
	out := fs.String("out", "", "kubeconfig to write")
	var groups stringList
	fs.Var(&groups, "group", "group (repeatable)")
	_ = fs.Parse(args)
	if *stateDir == "" || *name == "" || *out == "" {
		return errors.New("--state-dir, --name and --out are required")
	}
	p, err := loadOrCreatePKI(filepath.Join(*stateDir, "pki"))
	if err != nil {
		return err
	}
	sort.Strings(groups)
	certPEM, keyPEM, err := p.sign(*name, groups, false, nil, nil)
	if err != nil {
		return err
	}
	return p.writeKubeconfigData(*out, fmt.Sprintf("https://127.0.0.1:%d", apiserverPort), *name, certPEM, keyPEM)
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
