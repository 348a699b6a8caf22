package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// fakeNodeLabel marks the nodes this fake kubelet owns.
const fakeNodeLabel = "govbroker.io/fake-node"

// runFakelet plays the kubelet for a set of fake nodes: it registers them as Ready,
// renews their leases, moves every pod scheduled to them to Running and Ready (pod IP,
// start time, container statuses), and finishes the deletion of pods marked for deletion.
// Nothing runs: the pods are bookkeeping, which is all the control plane can observe.
func runFakelet(args []string) error {
	fs := flag.NewFlagSet("fakelet", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "admin kubeconfig")
	nodes := fs.Int("nodes", 3, "number of fake nodes")
	cpu := fs.String("node-cpu", "32", "allocatable cpu per node")
	memory := fs.String("node-memory", "128Gi", "allocatable memory per node")
	pods := fs.String("node-pods", "500", "allocatable pods per node")
	workers := fs.Int("workers", 8, "concurrent pod status writers")
	_ = fs.Parse(args)

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("loading %s: %w", *kubeconfig, err)
	}
	cfg.QPS = 500
	cfg.Burst = 1000
	cfg.UserAgent = "govbroker-fakelet"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	capacity := corev1.ResourceList{}
	for name, value := range map[corev1.ResourceName]string{corev1.ResourceCPU: *cpu, corev1.ResourceMemory: *memory, corev1.ResourcePods: *pods, corev1.ResourceEphemeralStorage: "1Ti"} {
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return fmt.Errorf("node %s %q: %w", name, value, err)
		}
		capacity[name] = q
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	f := &fakelet{client: client, ips: newIPAllocator()}
	names := make([]string, *nodes)
	for i := range names {
		names[i] = fmt.Sprintf("fake-node-%d", i)
		f.nodes.Store(names[i], true)
		if err := f.registerNode(ctx, names[i], i, capacity); err != nil {
			return fmt.Errorf("registering %s: %w", names[i], err)
		}
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for _, n := range names {
			if err := f.heartbeat(ctx, n); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "heartbeat %s: %v\n", n, err)
			}
		}
	}, 10*time.Second)

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
		}))
	podInformer := factory.Core().V1().Pods()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	_, _ = podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				f.ips.release(pod.Status.PodIP)
			}
		},
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced) {
		return fmt.Errorf("pod cache did not sync")
	}
	fmt.Printf("fakelet ready: %d nodes (%s cpu, %s memory, %s pods each)\n", *nodes, *cpu, *memory, *pods)

	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for {
				key, shutdown := queue.Get()
				if shutdown {
					return
				}
				if err := f.syncPod(ctx, podInformer.Lister(), key); err != nil && ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "pod %s: %v\n", key, err)
					queue.AddRateLimited(key)
				} else {
					queue.Forget(key)
				}
				queue.Done(key)
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
	fmt.Println("fakelet stopped")
	return nil
}

type fakelet struct {
	client kubernetes.Interface
	nodes  sync.Map // node name -> true, for the nodes this process owns
	ips    *ipAllocator
}

func (f *fakelet) registerNode(ctx context.Context, name string, index int, capacity corev1.ResourceList) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname":           name,
				"kubernetes.io/os":                 "linux",
				"kubernetes.io/arch":               "amd64",
				"node.kubernetes.io/instance-type": "fake",
				fakeNodeLabel:                      "true",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.244.%d.0/24", index)},
	}
	_, err := f.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// TaintNodesByCondition adds not-ready taints on create; the node lifecycle controller
	// would lift them, but it is not run here, so the kubelet's stand-in lifts them.
	current, err := f.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var taints []corev1.Taint
	for _, t := range current.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady && t.Key != corev1.TaintNodeUnreachable {
			taints = append(taints, t)
		}
	}
	if len(taints) != len(current.Spec.Taints) {
		current.Spec.Taints = taints
		if current, err = f.client.CoreV1().Nodes().Update(ctx, current, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	now := metav1.Now()
	current.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "fake kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.0.%d.%d", index/250, index%250+1)},
			{Type: corev1.NodeHostName, Address: name},
		},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "fake", OperatingSystem: "linux", Architecture: "amd64", ContainerRuntimeVersion: "fake://1"},
	}
	_, err = f.client.CoreV1().Nodes().UpdateStatus(ctx, current, metav1.UpdateOptions{})
	return err
}

// heartbeat renews the node's lease, as a kubelet does every few seconds.
func (f *fakelet) heartbeat(ctx context.Context, name string) error {
	leases := f.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(name),
				LeaseDurationSeconds: ptr.To[int32](40),
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// syncPod brings one pod on a fake node to where a kubelet would: Running and Ready once
// scheduled, gone once marked for deletion.
func (f *fakelet) syncPod(ctx context.Context, lister corelisters.PodLister, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := lister.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, ours := f.nodes.Load(pod.Spec.NodeName); !ours {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		err := f.client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	if pod.Status.Phase == corev1.PodRunning || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}

	now := metav1.Now()
	status := pod.Status.DeepCopy()
	status.Phase = corev1.PodRunning
	status.StartTime = &now
	node := pod.Spec.NodeName
	status.HostIP = f.nodeIP(node)
	status.HostIPs = []corev1.HostIP{{IP: status.HostIP}}
	ip := f.ips.allocate()
	status.PodIP = ip
	status.PodIPs = []corev1.PodIP{{IP: ip}}
	status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	status.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		status.InitContainerStatuses = append(status.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "fake://" + c.Image, ContainerID: "fake://" + string(pod.UID) + "/" + c.Name, Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}},
		})
	}
	status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		status.ContainerStatuses = append(status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "fake://" + c.Image, ContainerID: "fake://" + string(pod.UID) + "/" + c.Name,
			Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	updated := pod.DeepCopy()
	updated.Status = *status
	_, err = f.client.CoreV1().Pods(namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		f.ips.release(ip)
		return nil
	}
	if err != nil {
		f.ips.release(ip)
	}
	return err
}

func (f *fakelet) nodeIP(node string) string {
	var index int
	if _, err := fmt.Sscanf(node, "fake-node-%d", &index); err != nil {
		return "10.0.0.1"
	}
	return fmt.Sprintf("10.0.%d.%d", index/250, index%250+1)
}

// ipAllocator hands out unique pod IPs from 10.128.0.0/9 and takes back released ones.
type ipAllocator struct {
	mu   sync.Mutex
	next atomic.Uint32
	free []string
}

func newIPAllocator() *ipAllocator { return &ipAllocator{} }

func (a *ipAllocator) allocate() string {
	a.mu.Lock()
	if n := len(a.free); n > 0 {
		ip := a.free[n-1]
		a.free = a.free[:n-1]
		a.mu.Unlock()
		return ip
	}
	a.mu.Unlock()
	offset := a.next.Add(1)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 10<<24|128<<16+offset)
	return net.IP(b[:]).String()
}

func (a *ipAllocator) release(ip string) {
	if ip == "" {
		return
	}
	a.mu.Lock()
	a.free = append(a.free, ip)
	a.mu.Unlock()
}
