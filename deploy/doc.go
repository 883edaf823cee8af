// Package deploy holds lockstep's deployment examples (cron, Kubernetes,
// Grafana, the Dockerfile) and, as tests, the checks that keep them true:
// every Kubernetes manifest decodes strictly into the Kubernetes API types
// (no unknown or misspelt field), and what the README says of them holds
// (see manifests_test.go). It is a module of its own so that the Kubernetes
// API packages stay out of lockstep's go.mod; scripts/test.sh runs its tests.
// The cron wrapper and the Grafana dashboard are tested from lockstep's
// own tests, which run them against real servers.
package deploy
