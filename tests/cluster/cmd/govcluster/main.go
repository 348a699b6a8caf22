// Command govcluster runs govbroker's local Kubernetes control plane: a real etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler built from the Go module
// proxy, plus fake nodes whose pods reach Running, a second etcd for govbroker's own
// ledger, and PostgreSQL and Redis servers (Debian packages) for the data-service broker.
// Every component is a separate process on loopback.
//
//	govcluster up      --state-dir DIR --bin-dir DIR [--reuse]   start (or reuse) and wait until ready
//	govcluster down    --state-dir DIR                           stop every component
//	govcluster status  --state-dir DIR                           print what runs and whether it answers
//	govcluster user    --state-dir DIR --name N [--group G]...   write a kubeconfig for a test identity
//	govcluster spawn   --state-dir DIR --name N -- CMD...        supervise one more process (operator, API)
//	govcluster token   --state-dir DIR --user U [--group G]...   mint a bearer token (authn webhook)
//	govcluster authn   --state-dir DIR [--port P]                (internal) the token authentication webhook
//	govcluster etcd    ...                                       (internal) one embedded etcd member
//	govcluster fakelet ...                                       (internal) the fake nodes
package main

import (
	"fmt"
	"os"
	"syscall"
)

const usage = `govcluster: the local Kubernetes control plane of govbroker

Usage:
  govcluster up      --state-dir DIR --bin-dir DIR [--reuse] [--nodes N] [--node-cpu Q] [--node-memory Q] [--node-pods N]
  govcluster down    --state-dir DIR
  govcluster status  --state-dir DIR
  govcluster user    --state-dir DIR --name NAME [--group GROUP]... --out FILE
  govcluster spawn   --state-dir DIR --name NAME [--wait-port P] -- COMMAND [ARGS...]
  govcluster token   --state-dir DIR --user USER [--group GROUP]... [--ttl 1h] [--expired]
  govcluster authn   --state-dir DIR [--port 16444]
  govcluster etcd    --name NAME --data-dir DIR --client-port P --peer-port P
  govcluster fakelet --kubeconfig FILE [--nodes N] [--node-cpu Q] [--node-memory Q] [--node-pods N]

"up" writes DIR/kubeconfig (cluster admin) and DIR/cluster.env (API URL, etcd endpoints,
log and pid locations). Logs of every component are in DIR/logs.

PostgreSQL (127.0.0.1:15432) and Redis (127.0.0.1:16379) run beside the control plane;
their admin credentials are in DIR/postgres-admin and DIR/redis-admin (mode 0600).
"down --purge" forgets their data and credentials.

"token" appends a random bearer token for USER and GROUPs to DIR/tokens and prints it;
kube-apiserver checks it through the "authn" webhook, which reads that file.
`

func main() {
	// Whatever started govcluster may have left descriptors open without close-on-exec
	// (a flock(1) lock, a CI runner's pipe); the daemons it starts must not inherit them,
	// or a lock is never released and a pipe never reaches EOF. Go's own descriptors are
	// close-on-exec already.
	for fd := 3; fd < 1024; fd++ {
		syscall.CloseOnExec(fd)
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "up":
		err = runUp(args)
	case "down":
		err = runDown(args)
	case "status":
		err = runStatus(args)
	case "user":
		err = runUser(args)
	case "spawn":
		err = runSpawn(args)
	case "token":
		err = runToken(args)
	case "authn":
		err = runAuthn(args)
	case "etcd":
		err = runEtcd(args)
	case "fakelet":
		err = runFakelet(args)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "govcluster: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "govcluster %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
