// Command oracle answers parity cases with the Kubernetes code itself: the kubelet's image-name
// parsing (k8s.io/kubernetes/pkg/util/parsers over github.com/distribution/reference), its pull
// secret decoding (pkg/credentialprovider/secrets.MakeDockerKeyring) and its keyring
// (pkg/credentialprovider.BasicDockerKeyring), with the Go standard library they run on.
//
// It reads one JSON object per line on stdin, {"target": NAME, "case": {...}}, and writes one
// JSON object per line on stdout, in the same order. tests/parity (the Rust driver) sends the
// same cases to our code and compares; tests/parity/oracle/build.sh builds this program against
// the Kubernetes release in tests/kubernetes.sh.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"github.com/go-logr/logr"
	"github.com/opencontainers/go-digest"
	v1 "k8s.io/api/core/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/features"
	"k8s.io/kubernetes/pkg/util/parsers"
)

type request struct {
	Target string          `json:"target"`
	Case   json.RawMessage `json:"case"`
}

func main() {
	// The keyring logs every auths key it skips; the answers are all that goes out.
	klog.SetLogger(logr.Discard())
	// Credentials then carry the secret they came from, as in a default 1.35+ kubelet; this
	// only adds tracking fields and changes no matching.
	gate := fmt.Sprintf("%s=true", features.KubeletEnsureSecretPulledImages)
	if err := utilfeature.DefaultMutableFeatureGate.Set(gate); err != nil {
		fail(err)
	}

	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	encoder := json.NewEncoder(out)
	encoder.SetEscapeHTML(false)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) == 0 && err != nil {
			break
		}
		var req request
		if err := json.Unmarshal(line, &req); err != nil {
			fail(fmt.Errorf("unreadable request %q: %w", line, err))
		}
		answer, err := answer(req)
		if err != nil {
			fail(err)
		}
		if err := encoder.Encode(answer); err != nil {
			fail(err)
		}
		// One answer per question: the driver waits for each before it sends the next.
		if err := out.Flush(); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "oracle: %v\n", err)
	os.Exit(2)
}

func answer(req request) (any, error) {
	switch req.Target {
	case "about":
		return about(), nil
	case "reference":
		var c struct{ Image string }
		return decoded(req, &c, func() any { return parseImage(c.Image) })
	case "dockerconfig":
		var c struct {
			Type    string
			Key     string
			Payload []byte
		}
		return decoded(req, &c, func() any { return decodeSecret(c.Type, c.Key, c.Payload) })
	case "index_key":
		var c struct{ Raw string }
		return decoded(req, &c, func() any { return indexKey(c.Raw) })
	case "match":
		var c struct{ Key, Lookup string }
		return decoded(req, &c, func() any { return urlsMatch(c.Key, c.Lookup) })
	case "keyring":
		var c keyringCase
		return decoded(req, &c, func() any { return lookupAll(c) })
	case "namespace":
		var c namespaceCase
		return decoded(req, &c, func() any { return injectFor(c) })
	}
	return nil, fmt.Errorf("unknown target %q", req.Target)
}

// about names the versions this oracle was built from, as its build information records them.
func about() map[string]string {
	versions := map[string]string{"go": runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fail(errors.New("no build information"))
	}
	for _, dep := range info.Deps {
		switch dep.Path {
		case "k8s.io/kubernetes":
			versions["kubernetes"] = dep.Version
		case "github.com/distribution/reference":
			versions["reference"] = dep.Version
		}
	}
	return versions
}

func decoded(req request, into any, run func() any) (any, error) {
	if err := json.Unmarshal(req.Case, into); err != nil {
		return nil, fmt.Errorf("unreadable %s case %s: %w", req.Target, req.Case, err)
	}
	return run(), nil
}

// ---------------------------------------------------------------------------------------------
// Image references: what the kubelet's ParseImageName and ParseNormalizedNamed make of an image.

type imageAnswer struct {
	// Error is the kind of error (the names of our ReferenceError variants), "" when it parses.
	Error  string  `json:"error"`
	Domain string  `json:"domain"`
	Path   string  `json:"path"`
	Tag    *string `json:"tag"`
	Digest *string `json:"digest"`
	// Lookup is the kubelet's repoToPull, the string it looks credentials up with.
	Lookup string `json:"lookup"`
}

func parseImage(image string) imageAnswer {
	named, err := reference.ParseNormalizedNamed(image)
	repoToPull, _, _, kubeletErr := parsers.ParseImageName(image)
	if (err == nil) != (kubeletErr == nil) {
		return imageAnswer{Error: fmt.Sprintf("ParseImageName (%v) and ParseNormalizedNamed (%v) disagree", kubeletErr, err)}
	}
	if err != nil {
		return imageAnswer{Error: referenceErrorKind(err)}
	}
	answer := imageAnswer{
		Domain: reference.Domain(named),
		Path:   reference.Path(named),
		Lookup: repoToPull,
	}
	if tagged, ok := named.(reference.Tagged); ok {
		tag := tagged.Tag()
		answer.Tag = &tag
	}
	if digested, ok := named.(reference.Digested); ok {
		d := digested.Digest().String()
		answer.Digest = &d
	}
	return answer
}

func referenceErrorKind(err error) string {
	msg := err.Error()
	switch {
	// ParseNormalizedNamed's own errors quote the input between these.
	case strings.HasPrefix(msg, "invalid repository name (") &&
		strings.HasSuffix(msg, "), cannot specify 64-byte hexadecimal strings"):
		return "HexIdentifier"
	case strings.HasPrefix(msg, "invalid reference format: repository name (") &&
		strings.HasSuffix(msg, ") must be lowercase"),
		errors.Is(err, reference.ErrNameContainsUppercase):
		return "NameContainsUppercase"
	case errors.Is(err, reference.ErrReferenceInvalidFormat):
		return "InvalidFormat"
	case errors.Is(err, reference.ErrNameEmpty):
		return "Empty"
	case errors.Is(err, reference.ErrNameTooLong):
		return "NameTooLong"
	case errors.Is(err, digest.ErrDigestUnsupported):
		return "UnsupportedDigest"
	case errors.Is(err, digest.ErrDigestInvalidFormat), errors.Is(err, digest.ErrDigestInvalidLength):
		return "InvalidDigest"
	}
	return "unexpected error: " + msg
}

// ---------------------------------------------------------------------------------------------
// Secret decoding: MakeDockerKeyring over one secret, as the kubelet calls it for a pod.

type secretAnswer struct {
	// Result: ignored, keys, syntax, type, base64, format, or other.
	Result string `json:"result"`
	// Keys are the auths keys the kubelet decoded, sorted (a Go map has no order).
	Keys   []string `json:"keys"`
	Offset int64    `json:"offset"`
	// Found is the JSON type of the value an UnmarshalTypeError names.
	Found   string `json:"found"`
	Message string `json:"message"`
}

func decodeSecret(secretType, key string, payload []byte) secretAnswer {
	secret := v1.Secret{Type: v1.SecretType(secretType), Data: map[string][]byte{key: payload}}
	keyring, err := secrets.MakeDockerKeyring([]v1.Secret{secret}, nil)
	if err != nil {
		return decodeError(err)
	}
	if keyring == nil {
		// MakeDockerKeyring hands back the default keyring (none here) when no secret counts.
		return secretAnswer{Result: "ignored"}
	}
	// Decoded once more into the same types, for the keys the keyring was built from.
	var auths credentialprovider.DockerConfig
	if secret.Type == v1.SecretTypeDockerConfigJson {
		var config credentialprovider.DockerConfigJSON
		if err := json.Unmarshal(payload, &config); err != nil {
			return secretAnswer{Result: "other", Message: "second decode failed: " + err.Error()}
		}
		auths = config.Auths
	} else if err := json.Unmarshal(payload, &auths); err != nil {
		return secretAnswer{Result: "other", Message: "second decode failed: " + err.Error()}
	}
	keys := make([]string, 0, len(auths))
	for registry := range auths {
		keys = append(keys, registry)
	}
	sort.Strings(keys)
	return secretAnswer{Result: "keys", Keys: keys}
}

func decodeError(err error) secretAnswer {
	var syntax *json.SyntaxError
	var wrongType *json.UnmarshalTypeError
	var corrupt base64.CorruptInputError
	switch {
	case errors.As(err, &syntax):
		return secretAnswer{Result: "syntax", Offset: syntax.Offset, Message: err.Error()}
	case errors.As(err, &wrongType):
		found, _, _ := strings.Cut(wrongType.Value, " ")
		return secretAnswer{Result: "type", Found: found, Message: err.Error()}
	case errors.As(err, &corrupt):
		return secretAnswer{Result: "base64", Offset: int64(corrupt), Message: err.Error()}
	case strings.Contains(err.Error(), "must be formatted as base64(username:password)"):
		return secretAnswer{Result: "format", Message: err.Error()}
	}
	return secretAnswer{Result: "other", Message: err.Error()}
}

// ---------------------------------------------------------------------------------------------
// The keyring.

// indexKey is the key BasicDockerKeyring.Add files an auths key under, or nil when Add skips it.
// The keyring keeps its index private; reflection reads it without copying Add's logic.
func indexKey(raw string) map[string][]byte {
	keyring := &credentialprovider.BasicDockerKeyring{}
	keyring.Add(nil, credentialprovider.DockerConfig{raw: {}})
	index := reflect.ValueOf(keyring).Elem().FieldByName("index")
	if !index.IsValid() || index.Kind() != reflect.Slice {
		fail(errors.New("BasicDockerKeyring has no index field: update indexKey for this release"))
	}
	switch index.Len() {
	case 0:
		return map[string][]byte{"key": nil}
	case 1:
		// Bytes, not a string: a %XX escape can leave bytes that are not UTF-8.
		return map[string][]byte{"key": []byte(index.Index(0).String())}
	}
	fail(fmt.Errorf("one auths key made %d index keys", index.Len()))
	return nil
}

func urlsMatch(key, lookup string) map[string]bool {
	matched, err := credentialprovider.URLsMatchStr(key, lookup)
	return map[string]bool{"matched": matched, "error": err != nil}
}

type keyringCase struct {
	Owners []struct {
		Name string
		Keys []string
	}
	Lookups []string
}

// lookupAll adds each owner's keys (one Add per owner, in order, the owner's name as the
// credential's user) and answers every lookup with the owners returned, each once.
func lookupAll(c keyringCase) map[string][][]string {
	keyring := &credentialprovider.BasicDockerKeyring{}
	for _, owner := range c.Owners {
		config := credentialprovider.DockerConfig{}
		for _, key := range owner.Keys {
			config[key] = credentialprovider.DockerConfigEntry{Username: owner.Name}
		}
		keyring.Add(nil, config)
	}
	results := make([][]string, 0, len(c.Lookups))
	for _, lookup := range c.Lookups {
		creds, _ := keyring.Lookup(lookup)
		results = append(results, distinct(creds, func(c credentialprovider.TrackedAuthConfig) string {
			return c.Username
		}))
	}
	return map[string][][]string{"owners": results}
}

func distinct(creds []credentialprovider.TrackedAuthConfig, name func(credentialprovider.TrackedAuthConfig) string) []string {
	names := []string{}
	for _, cred := range creds {
		n := name(cred)
		if !contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

func contains(list []string, s string) bool {
	for _, item := range list {
		if item == s {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// A namespace and a pod: what the webhook must inject (docs MATCHING.md §6), computed with the
// kubelet's functions, then checked by running the kubelet's path on the pod as injected.

type namespaceCase struct {
	Secrets []struct {
		Name string
		Type string
		Data map[string][]byte
	}
	PodSecrets []string `json:"pod_secrets"`
	Images     []string
}

type injection struct {
	Secret     string   `json:"secret"`
	Registries []string `json:"registries"`
}

type namespaceAnswer struct {
	Injected      []injection `json:"injected"`
	InvalidImages int         `json:"invalid_images"`
	// BrokenBefore: the kubelet fails every pull of the pod as it came (an undecodable secret
	// on it). BrokenAfter: the same for the pod with the injection.
	BrokenBefore bool `json:"broken_before"`
	BrokenAfter  bool `json:"broken_after"`
	// Unused lists injected secrets the kubelet, given the injected pod, does not return for
	// an image they were injected for.
	Unused []string `json:"unused"`
}

func injectFor(c namespaceCase) namespaceAnswer {
	byName := map[string]v1.Secret{}
	for _, s := range c.Secrets {
		byName[s.Name] = v1.Secret{Type: v1.SecretType(s.Type), Data: s.Data}
	}
	// Candidates: every secret the kubelet can decode, in name order (the webhook's order).
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	sort.Strings(names)
	candidates := []v1.Secret{}
	for _, name := range names {
		secret := secretNamed(byName, name)
		if keyring, err := secrets.MakeDockerKeyring([]v1.Secret{secret}, nil); err == nil && keyring != nil {
			candidates = append(candidates, secret)
		}
	}
	all, err := secrets.MakeDockerKeyring(candidates, nil)
	if err != nil {
		fail(fmt.Errorf("decodable secrets failed together: %w", err))
	}

	answer := namespaceAnswer{Injected: []injection{}, Unused: []string{}}
	var lookups []string
	for _, image := range c.Images {
		repoToPull, _, _, err := parsers.ParseImageName(image)
		if err != nil {
			answer.InvalidImages++
			continue
		}
		lookups = append(lookups, repoToPull)
		for _, secret := range lookupSecrets(all, repoToPull) {
			if !contains(c.PodSecrets, secret) {
				answer.Injected = record(answer.Injected, secret, repoToPull)
			}
		}
	}

	final := append([]string{}, c.PodSecrets...)
	for _, injected := range answer.Injected {
		final = append(final, injected.Secret)
	}
	_, errBefore := secrets.MakeDockerKeyring(podSecrets(byName, c.PodSecrets), nil)
	kubelet, errAfter := secrets.MakeDockerKeyring(podSecrets(byName, final), nil)
	answer.BrokenBefore, answer.BrokenAfter = errBefore != nil, errAfter != nil
	if errAfter == nil {
		for _, lookup := range lookups {
			used := lookupSecrets(kubelet, lookup)
			for _, injected := range answer.Injected {
				if contains(injected.Registries, lookup) && !contains(used, injected.Secret) {
					answer.Unused = append(answer.Unused, injected.Secret+" for "+lookup)
				}
			}
		}
	}
	return answer
}

func secretNamed(byName map[string]v1.Secret, name string) v1.Secret {
	secret := byName[name]
	secret.Name = name
	return secret
}

// podSecrets resolves imagePullSecrets as the kubelet's getPullSecretsForPod does: empty and
// missing names are skipped.
func podSecrets(byName map[string]v1.Secret, refs []string) []v1.Secret {
	list := []v1.Secret{}
	for _, name := range refs {
		if _, ok := byName[name]; name != "" && ok {
			list = append(list, secretNamed(byName, name))
		}
	}
	return list
}

// lookupSecrets: the secrets whose credentials the keyring returns, in order, each once.
func lookupSecrets(keyring credentialprovider.DockerKeyring, lookup string) []string {
	if keyring == nil {
		return []string{}
	}
	creds, _ := keyring.Lookup(lookup)
	return distinct(creds, func(c credentialprovider.TrackedAuthConfig) string {
		if c.Source == nil || c.Source.Secret == nil {
			fail(errors.New("a credential without its secret: is KubeletEnsureSecretPulledImages on?"))
		}
		return c.Source.Secret.Name
	})
}

func record(list []injection, secret, lookup string) []injection {
	for i := range list {
		if list[i].Secret == secret {
			if !contains(list[i].Registries, lookup) {
				list[i].Registries = append(list[i].Registries, lookup)
			}
			return list
		}
	}
	return append(list, injection{Secret: secret, Registries: []string{lookup}})
}
