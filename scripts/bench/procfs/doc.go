// Package procfs reads the two /proc figures the benchmark tools report: a process's CPU time
// (utime+stime from /proc/PID/stat) and its resident set (VmRSS and VmHWM from
// /proc/PID/status). The harness and the load tools (consulbench, rateload) share it so the
// figures they print are computed one way.
package procfs
