package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// armTemplate is the part of deploy/azure/azuredeploy.json the tests read.
type armTemplate struct {
	Parameters map[string]struct {
		Type         string `json:"type"`
		DefaultValue any    `json:"defaultValue"`
	} `json:"parameters"`
	Variables map[string]any  `json:"variables"`
	Resources []armResource   `json:"resources"`
	Outputs   json.RawMessage `json:"outputs"`
}

type armResource struct {
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Scope      string          `json:"scope"`
	Properties json.RawMessage `json:"properties"`
}

type armJob struct {
	Configuration struct {
		TriggerType           string `json:"triggerType"`
		ScheduleTriggerConfig struct {
			CronExpression string `json:"cronExpression"`
		} `json:"scheduleTriggerConfig"`
		Secrets []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"secrets"`
	} `json:"configuration"`
	Template struct {
		Containers []struct {
			Image   string   `json:"image"`
			Command []string `json:"command"`
			Args    []string `json:"args"`
			Env     []struct {
				Name, Value, SecretRef string
			} `json:"env"`
			VolumeMounts []struct {
				VolumeName string `json:"volumeName"`
				MountPath  string `json:"mountPath"`
			} `json:"volumeMounts"`
		} `json:"containers"`
		Volumes []struct {
			Name        string `json:"name"`
			StorageType string `json:"storageType"`
			Secrets     []struct {
				SecretRef string `json:"secretRef"`
				Path      string `json:"path"`
			} `json:"secrets"`
		} `json:"volumes"`
	} `json:"template"`
}

func readARM(t *testing.T) armTemplate {
	t.Helper()
	data, err := os.ReadFile("../../deploy/azure/azuredeploy.json")
	if err != nil {
		t.Fatal(err)
	}
	var tpl armTemplate
	if err := json.Unmarshal(data, &tpl); err != nil {
		t.Fatalf("azuredeploy.json: %v", err)
	}
	return tpl
}

// armFormat is ARM's format() for {N} placeholders (the template's YAML
// has no literal braces).
func armFormat(s string, args ...string) string {
	return regexp.MustCompile(`\{(\d)\}`).ReplaceAllStringFunc(s, func(m string) string {
		var i int
		fmt.Sscan(m[1:2], &i)
		return args[i]
	})
}

// The deployment takes the template's parameter names, deploys the job on
// the template's schedule with the identity and role assignments, and runs
// a command line and configuration that fhirdeid accepts.
func TestAzureDeployTemplate(t *testing.T) {
	tpl := readARM(t)
	for _, p := range azureParameterNames {
		if _, ok := tpl.Parameters[p]; !ok {
			t.Errorf("parameter %s missing", p)
		}
	}
	if tpl.Parameters["fhirserver-clientSecret"].Type != "securestring" {
		t.Error("the client secret is not a securestring")
	}
	// The example parameters file gives every parameter without a default
	// and names only the template's parameters.
	var ex struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	data, err := os.ReadFile("../../deploy/azure/azuredeploy.parameters.example.json")
	if err != nil || json.Unmarshal(data, &ex) != nil {
		t.Fatalf("parameters example: %v", err)
	}
	for name, p := range tpl.Parameters {
		if _, ok := ex.Parameters[name]; !ok && p.DefaultValue == nil {
			t.Errorf("the example lacks the required parameter %s", name)
		}
	}
	for name := range ex.Parameters {
		if _, ok := tpl.Parameters[name]; !ok {
			t.Errorf("the example has an unknown parameter %s", name)
		}
	}

	types := map[string]int{}
	var job armJob
	roles := map[string]bool{}
	for _, r := range tpl.Resources {
		types[r.Type]++
		switch r.Type {
		case "Microsoft.App/jobs":
			if err := json.Unmarshal(r.Properties, &job); err != nil {
				t.Fatal(err)
			}
		case "Microsoft.Authorization/roleAssignments":
			var p struct{ RoleDefinitionID string }
			json.Unmarshal(r.Properties, &p)
			roles[p.RoleDefinitionID] = true
		}
	}
	for _, want := range []string{"Microsoft.App/jobs", "Microsoft.ManagedIdentity/userAssignedIdentities", "Microsoft.App/managedEnvironments",
		"Microsoft.KeyVault/vaults", "Microsoft.Storage/storageAccounts", "Microsoft.Resources/deployments"} {
		if types[want] == 0 {
			t.Errorf("no %s", want)
		}
	}
	text := string(mustRead(t, "../../deploy/azure/azuredeploy.json"))
	for name, id := range map[string]string{"roleStorageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
		"roleKeyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6", "roleFhirDataExporter": "3db33094-8700-4567-8da5-1501d4e7e843"} {
		if tpl.Variables[name] != id || !strings.Contains(text, "variables('"+name+"')") {
			t.Errorf("role %s (%s) not assigned", name, id)
		}
	}
	if len(roles) < 3 {
		t.Errorf("%d role assignments at this level", len(roles))
	}
	if d := tpl.Parameters["cronExpression"].DefaultValue; d != "0 1 * * *" || job.Configuration.ScheduleTriggerConfig.CronExpression != "[parameters('cronExpression')]" ||
		job.Configuration.TriggerType != "Schedule" {
		t.Errorf("schedule: %v %q", d, job.Configuration.ScheduleTriggerConfig.CronExpression)
	}

	// The container's command line: the image's entrypoint (fhirdeid) with
	// a command fhirdeid has, flags that command accepts, and the
	// configuration file where the secret volume mounts it.
	if len(job.Template.Containers) != 1 {
		t.Fatalf("%d containers", len(job.Template.Containers))
	}
	c := job.Template.Containers[0]
	if len(c.Command) != 0 {
		t.Errorf("command %v overrides the image's entrypoint", c.Command)
	}
	if len(c.Args) < 2 {
		t.Fatalf("args %v", c.Args)
	}
	if _, ok := commands[c.Args[0]]; !ok || c.Args[0] != "run" {
		t.Fatalf("args[0] %q is not fhirdeid's run command", c.Args[0])
	}
	_, _, help := runCmd(t, "", nil, c.Args[0], "-h")
	for _, a := range c.Args[1 : len(c.Args)-1] {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !strings.Contains(help, "  -"+name) {
			t.Errorf("argument %q is not a flag of fhirdeid %s", a, c.Args[0])
		}
	}
	cfgPath := c.Args[len(c.Args)-1]
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range job.Template.Volumes {
			if v.Name != m.VolumeName || v.StorageType != "Secret" {
				continue
			}
			for _, s := range v.Secrets {
				if filepath.Join(m.MountPath, s.Path) == cfgPath && s.SecretRef == job.Configuration.Secrets[0].Name {
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Fatalf("%s is not where the configuration secret is mounted", cfgPath)
	}
	stateMounted := false
	for _, m := range c.VolumeMounts {
		stateMounted = stateMounted || m.MountPath == "/var/lib/fhirdeid"
	}
	if !stateMounted {
		t.Error("no volume at /var/lib/fhirdeid (the image's state volume)")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = "x"
	}
	if _, ok := env["AZURE_CLIENT_ID"]; !ok {
		t.Error("AZURE_CLIENT_ID (the user-assigned identity for the default credential chain) is not set")
	}

	// The configuration the template writes, for both auth choices, is
	// accepted by validate with the container's environment, and only
	// uses variables the container sets.
	if !strings.Contains(job.Configuration.Secrets[0].Value, "format(variables('pipelineTemplate')") {
		t.Fatal("the configuration secret is not built from variables('pipelineTemplate')")
	}
	pipelineTemplate, _ := tpl.Variables["pipelineTemplate"].(string)
	authEntra, _ := tpl.Variables["authEntraYaml"].(string)
	authIdentity, _ := tpl.Variables["authIdentityYaml"].(string)
	url := "https://contoso-fhir.azurehealthcareapis.com"
	for name, auth := range map[string]string{
		"identity": authIdentity,
		"entra":    armFormat(authEntra, "00000000-0000-0000-0000-000000000001", "2a6f3c1e-8d4b-4f7a-9c2e-5b1d0e7f3a94", "fhirdeid-abc123", "fhirserver-clientSecret", url),
	} {
		yml := armFormat(pipelineTemplate, url, auth, "deidentified", "contosofhirexport", "0 1 * * *")
		var probe map[string]any
		if err := yaml.Unmarshal([]byte(yml), &probe); err != nil {
			t.Fatalf("%s: YAML: %v\n%s", name, err, yml)
		}
		for _, m := range envRef.FindAllStringSubmatch(yml, -1) {
			if _, ok := env[m[1]]; !ok {
				t.Errorf("%s: the configuration uses ${%s}, which the container does not set", name, m[1])
			}
		}
		dir := t.TempDir()
		p := filepath.Join(dir, "fhirdeid.yml")
		os.WriteFile(p, []byte(yml), 0o644)
		code, stdout, stderr := runCmd(t, "", env, "validate", p)
		if code != 0 {
			t.Errorf("%s: validate: exit %d: %s%s\n%s", name, code, stdout, stderr, yml)
		}
		if name == "entra" && !strings.Contains(stdout, "Key Vault reference azurekeyvault://fhirdeid-abc123/fhirserver-clientSecret") {
			t.Errorf("entra: the secret is not read from Key Vault: %s", stdout)
		}
	}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deploy/kubernetes: the CronJob runs a command fhirdeid has, on the
// template's schedule, as the image's non-root user with workload identity,
// and its configuration validates with the container's environment.
func TestKubernetesCronJob(t *testing.T) {
	f, err := os.Open("../../deploy/kubernetes/fhirdeid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var config string
	var cron struct {
		Spec struct {
			Schedule    string `yaml:"schedule"`
			JobTemplate struct {
				Spec struct {
					Template struct {
						Metadata struct {
							Labels map[string]string `yaml:"labels"`
						} `yaml:"metadata"`
						Spec struct {
							ServiceAccountName string `yaml:"serviceAccountName"`
							SecurityContext    struct {
								RunAsNonRoot bool `yaml:"runAsNonRoot"`
								RunAsUser    int  `yaml:"runAsUser"`
							} `yaml:"securityContext"`
							Containers []struct {
								Args []string `yaml:"args"`
								Env  []struct {
									Name, Value string
								} `yaml:"env"`
								VolumeMounts []struct {
									Name      string `yaml:"name"`
									MountPath string `yaml:"mountPath"`
								} `yaml:"volumeMounts"`
							} `yaml:"containers"`
						} `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			} `yaml:"jobTemplate"`
		} `yaml:"spec"`
	}
	kinds := map[string]bool{}
	for {
		var node yaml.Node
		if err := dec.Decode(&node); err != nil {
			break
		}
		var head struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := node.Decode(&head); err != nil {
			t.Fatal(err)
		}
		kinds[head.Kind] = true
		switch head.Kind {
		case "ConfigMap":
			config = head.Data["fhirdeid.yml"]
		case "CronJob":
			if err := node.Decode(&cron); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "CronJob"} {
		if !kinds[k] {
			t.Errorf("no %s", k)
		}
	}
	pod := cron.Spec.JobTemplate.Spec.Template
	if cron.Spec.Schedule != "0 1 * * *" || pod.Metadata.Labels["azure.workload.identity/use"] != "true" || pod.Spec.ServiceAccountName == "" ||
		!pod.Spec.SecurityContext.RunAsNonRoot || pod.Spec.SecurityContext.RunAsUser != 10001 {
		t.Errorf("cron job: %+v", cron.Spec.Schedule)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatal("containers")
	}
	c := pod.Spec.Containers[0]
	if len(c.Args) != 2 || c.Args[0] != "run" || c.Args[1] != "/etc/fhirdeid/fhirdeid.yml" {
		t.Fatalf("args %v", c.Args)
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = true
	}
	if !mounts["/etc/fhirdeid"] || !mounts["/var/lib/fhirdeid"] {
		t.Errorf("mounts %v", mounts)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	p := filepath.Join(t.TempDir(), "fhirdeid.yml")
	os.WriteFile(p, []byte(config), 0o644)
	if code, stdout, stderr := runCmd(t, "", env, "validate", p); code != 0 {
		t.Fatalf("validate: exit %d: %s%s", code, stdout, stderr)
	}
}
