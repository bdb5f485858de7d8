// Package kube is the dispatcher's Kubernetes API client: core/v1 Secrets of
// one namespace, which is all the dispatcher reads and writes.
//
// It is client-go's generic typed client (gentype) over a scheme holding
// only core/v1, instead of the generated clientset: the clientset's scheme
// registers every built-in API group at start, and with its fifty typed
// clients it cost each dispatcher pod about 9.5 MiB more RSS (7.5 MiB of
// the binary's pages, measured on a bare program that only builds the
// client) for nothing the dispatcher uses.
package kube

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
)

var (
	// Scheme holds core/v1 and the meta types its requests need.
	Scheme = runtime.NewScheme()
	// Codecs and ParameterCodec play the role of client-go's kubernetes/scheme
	// ones, for requests built by hand on RESTClient.
	Codecs         = serializer.NewCodecFactory(Scheme)
	ParameterCodec = runtime.NewParameterCodec(Scheme)
)

func init() {
	// As client-go's kubernetes/scheme registers them: the unversioned meta
	// options under "v1", then the group's types.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	if err := corev1.AddToScheme(Scheme); err != nil {
		panic(err)
	}
}

// SecretsClient is the typed client of one namespace's Secrets.
type SecretsClient = gentype.ClientWithList[*corev1.Secret, *corev1.SecretList]

// Client talks to the core/v1 API.
type Client struct {
	rc rest.Interface
}

// NewForConfig builds a client configured as client-go's CoreV1 client
// would be from cfg (which is not changed).
func NewForConfig(cfg *rest.Config) (*Client, error) {
	c := *cfg
	gv := corev1.SchemeGroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/api"
	c.NegotiatedSerializer = Codecs.WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(&c)
	if err != nil {
		return nil, fmt.Errorf("building the core/v1 client: %w", err)
	}
	return &Client{rc: rc}, nil
}

// NewForConfigOrDie is NewForConfig that panics on a bad config, for tests.
func NewForConfigOrDie(cfg *rest.Config) *Client {
	c, err := NewForConfig(cfg)
	if err != nil {
		panic(err)
	}
	return c
}

// Secrets is the typed client of namespace's Secrets; like the clientset's,
// it asks for protobuf.
func (c *Client) Secrets(namespace string) *SecretsClient {
	return gentype.NewClientWithList[*corev1.Secret, *corev1.SecretList](
		"secrets", c.rc, ParameterCodec, namespace,
		func() *corev1.Secret { return &corev1.Secret{} },
		func() *corev1.SecretList { return &corev1.SecretList{} },
		gentype.PrefersProtobuf[*corev1.Secret](),
	)
}

// RESTClient is the core/v1 REST client, for requests the typed client
// cannot make (the store's pre-encoded updates).
func (c *Client) RESTClient() rest.Interface { return c.rc }
