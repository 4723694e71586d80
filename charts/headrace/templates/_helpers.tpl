{{- define "headrace.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "headrace.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: headrace
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "headrace.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "headrace.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "headrace.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "headrace.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* What the operator may do in a namespace it watches (a ClusterRole or one Role per namespace). */}}
{{- define "headrace.rules" -}}
- apiGroups: ["headrace.io"]
  resources: ["cdcpipelines"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["headrace.io"]
  resources: ["cdcpipelines/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["headrace.io"]
  resources: ["cdcpipelines/finalizers"]
  verbs: ["update"]
# Discovering Cassandra pods and watching them and the runtimes' pods; never written.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get"]
- apiGroups: ["cassandra.datastax.com"]
  resources: ["cassandradatacenters"]
  verbs: ["get"]
# Checking that referenced Secret keys exist (key names only; values are never logged or copied).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# What the operator renders for each pipeline (ConfigMaps and Deployments watched for changes by hand).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "create", "patch", "update", "delete"]
# Dead-letter claims (runtime.deadLetters.volumeClaim): created, never deleted (they hold rejected rows).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "create", "patch", "update", "delete"]
# Events on pipelines: phase changes, problems and recoveries, rollouts (and kopf's handler errors).
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Read-only cluster-scoped reads kopf makes in every mode. */}}
{{- define "headrace.discoveryRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end -}}
