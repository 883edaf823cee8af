package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// objects decodes every manifest under kubernetes/ strictly: an unknown or
// misspelt field, a duplicate key or a wrong type fails.
func objects(t *testing.T) []any {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var objs []any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "batch/v1 Job":
				obj = &batchv1.Job{}
			case "batch/v1 CronJob":
				obj = &batchv1.CronJob{}
			case "v1 Secret":
				obj = &corev1.Secret{}
			case "v1 ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "rbac.authorization.k8s.io/v1 Role":
				obj = &rbacv1.Role{}
			case "rbac.authorization.k8s.io/v1 RoleBinding":
				obj = &rbacv1.RoleBinding{}
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			default:
				t.Fatalf("%s document %d: unexpected %s %s", f, i, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, tm.Kind, err)
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func all[T any](objs []any) []T {
	var out []T
	for _, o := range objs {
		if x, ok := o.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// buildLockstep builds lockstep from the module above, once per test run.
func buildLockstep(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "lockstep")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build lockstep: %v\n%s", err, out)
	}
	return exe
}

// selector is the label selector the waiting init container uses.
func selector(t *testing.T, objs []any) map[string]string {
	t.Helper()
	deps := all[*appsv1.Deployment](objs)
	if len(deps) != 1 || len(deps[0].Spec.Template.Spec.InitContainers) != 1 {
		t.Fatalf("want one Deployment with one init container, got %d", len(deps))
	}
	script := strings.Join(deps[0].Spec.Template.Spec.InitContainers[0].Command, " ")
	for _, want := range []string{"kubectl get jobs -l \"$sel\" --sort-by=.metadata.creationTimestamp -o name | tail -n 1",
		"kubectl wait --for=condition=complete"} {
		if !strings.Contains(script, want) {
			t.Errorf("the init container does not run %q:\n%s", want, script)
		}
	}
	m := regexp.MustCompile(`sel='([^']+)'`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no sel='...' in the init container:\n%s", script)
	}
	sel, err := metav1.ParseToLabelSelector(m[1])
	if err != nil || len(sel.MatchExpressions) != 0 || len(sel.MatchLabels) == 0 {
		t.Fatalf("selector %q: %v", m[1], err)
	}
	// It may read Jobs: a RoleBinding gives its service account a Role
	// that lists, gets and watches them.
	sa := deps[0].Spec.Template.Spec.ServiceAccountName
	allowed := false
	for _, rb := range all[*rbacv1.RoleBinding](objs) {
		if !slices.ContainsFunc(rb.Subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" && s.Name == sa }) {
			continue
		}
		for _, r := range all[*rbacv1.Role](objs) {
			if r.Name != rb.RoleRef.Name {
				continue
			}
			for _, rule := range r.Rules {
				if slices.Contains(rule.APIGroups, "batch") && slices.Contains(rule.Resources, "jobs") &&
					slices.Contains(rule.Verbs, "list") && slices.Contains(rule.Verbs, "get") && slices.Contains(rule.Verbs, "watch") {
					allowed = true
				}
			}
		}
	}
	if sa == "" || !allowed {
		t.Errorf("the init container's service account %q may not get, list and watch jobs", sa)
	}
	return sel.MatchLabels
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// checkJob checks what the README promises of a Job spec: the labels the
// init container selects, a grace period above the shutdown bound, a
// non-root user, the connection strings from the Secret, and arguments
// lockstep accepts.
func checkJob(t *testing.T, what string, jobLabels map[string]string, spec batchv1.JobSpec, objs []any, sel map[string]string, exe string) {
	t.Helper()
	pod := spec.Template.Spec
	if !hasLabels(jobLabels, sel) || !hasLabels(spec.Template.Labels, sel) {
		t.Errorf("%s: labels %v (pods %v) lack the selector %v", what, jobLabels, spec.Template.Labels, sel)
	}
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: restartPolicy %q (podFailurePolicy needs Never)", what, pod.RestartPolicy)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: not run as a non-root user", what)
	} else if df, _ := os.ReadFile("Dockerfile"); !strings.Contains(string(df), "\nUSER "+strconv.FormatInt(*sc.RunAsUser, 10)+":") {
		t.Errorf("%s: runAsUser %d is not the Dockerfile's USER", what, *sc.RunAsUser)
	}
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "lockstep" {
		t.Fatalf("%s: want one container named lockstep", what)
	}
	c := pod.Containers[0]
	if p := spec.PodFailurePolicy; p == nil || !slices.ContainsFunc(p.Rules, func(r batchv1.PodFailurePolicyRule) bool {
		return r.Action == batchv1.PodFailurePolicyActionFailJob && r.OnExitCodes != nil && *r.OnExitCodes.ContainerName == c.Name &&
			slices.Equal(r.OnExitCodes.Values, []int32{2, 4})
	}) {
		t.Errorf("%s: no podFailurePolicy failing the Job on exit 2 and 4 of container %s", what, c.Name)
	}
	// The grace period covers the commit point (commit and re-check, a
	// minute each) plus the stall timeout.
	stall := 30 * time.Second
	if i := slices.Index(c.Args, "--stall-timeout"); i >= 0 {
		stall, _ = time.ParseDuration(c.Args[i+1])
	}
	grace := int64(-1)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if time.Duration(grace)*time.Second <= stall+2*time.Minute {
		t.Errorf("%s: terminationGracePeriodSeconds %d is not above --stall-timeout %s plus 2 minutes", what, grace, stall)
	}
	secrets := map[string]corev1.Secret{}
	for _, s := range all[*corev1.Secret](objs) {
		secrets[s.Name] = *s
	}
	for _, name := range []string{"LOCKSTEP_SOURCE", "LOCKSTEP_DEST"} {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s: %s does not come from a Secret", what, name)
			continue
		}
		ref := c.Env[i].ValueFrom.SecretKeyRef
		if _, ok := secrets[ref.Name].StringData[ref.Key]; !ok {
			t.Errorf("%s: %s reads key %s of Secret %s, which secret.yaml does not have", what, name, ref.Key, ref.Name)
		}
	}
	// The arguments parse: without connection strings lockstep stops at
	// the missing source, not at a flag.
	args := slices.Clone(c.Args)
	if i := slices.Index(args, "--metrics-listen"); i >= 0 {
		args[i+1] = "127.0.0.1:0"
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool {
		return strings.HasPrefix(e, "LOCKSTEP_") || strings.HasPrefix(e, "PG")
	})
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "no connection string") || strings.Contains(string(out), "see --help") {
		t.Errorf("%s: lockstep %s:\n%s", what, strings.Join(args, " "), out)
	}
}

func TestKubernetesManifests(t *testing.T) {
	objs := objects(t)
	sel := selector(t, objs)
	exe := buildLockstep(t)
	jobs, crons := all[*batchv1.Job](objs), all[*batchv1.CronJob](objs)
	if len(jobs) != 1 || len(crons) != 1 {
		t.Fatalf("want one Job and one CronJob, got %d and %d", len(jobs), len(crons))
	}
	j := jobs[0]
	if j.Name != "" || j.GenerateName == "" {
		t.Errorf("the Job must have a generateName (one name per run), not name %q", j.Name)
	}
	if j.Spec.Parallelism == nil || *j.Spec.Parallelism < 2 || j.Spec.Completions != nil {
		t.Errorf("the Job should show parallelism > 1 as a work queue (completions unset): %v, %v", j.Spec.Parallelism, j.Spec.Completions)
	}
	checkJob(t, "Job", j.Labels, j.Spec, objs, sel, exe)
	c := crons[0]
	if c.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("CronJob concurrencyPolicy %q, want Forbid", c.Spec.ConcurrencyPolicy)
	}
	if len(strings.Fields(c.Spec.Schedule)) != 5 || c.Spec.JobTemplate.Spec.ActiveDeadlineSeconds == nil {
		t.Errorf("CronJob schedule %q, activeDeadlineSeconds %v", c.Spec.Schedule, c.Spec.JobTemplate.Spec.ActiveDeadlineSeconds)
	}
	checkJob(t, "CronJob", c.Spec.JobTemplate.Labels, c.Spec.JobTemplate.Spec, objs, sel, exe)
}

// A misspelt field is an error, not silently dropped: the strict decoding
// above can fail.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	doc := "apiVersion: batch/v1\nkind: Job\nspec:\n  paralelism: 2\n"
	if err := yaml.UnmarshalStrict([]byte(doc), &batchv1.Job{}); err == nil || !strings.Contains(err.Error(), "paralelism") {
		t.Errorf("a misspelt field decoded: %v", err)
	}
}
