package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// parseStatCPU returns utime+stime (clock ticks) from the text of
// /proc/PID/stat.
func parseStatCPU(stat string) (int64, error) { return statTicks(stat, 2) }

// parseStatCPUWithChildren returns utime+stime+cutime+cstime from the
// text of /proc/PID/stat: the children's are those of the ended children
// the process waited for.
func parseStatCPUWithChildren(stat string) (int64, error) { return statTicks(stat, 4) }

// statTimes names the consecutive time fields of /proc/PID/stat, from
// utime (field 14).
var statTimes = [...]string{"utime", "stime", "cutime", "cstime"}

// statTicks sums the first n of statTimes from the text of
// /proc/PID/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func statTicks(stat string, n int) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse /proc stat: no ')' after the command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime, field 14, is f[11].
	if len(f) < 11+n {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least %d", len(f), 11+n)
	}
	var total int64
	for j, v := range f[11 : 11+n] {
		ticks, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc stat %s %q: %w", statTimes[j], v, err)
		}
		total += ticks
	}
	return total, nil
}

// parseStatusHWM returns VmHWM (peak resident set, kB) from the text of
// /proc/PID/status.
func parseStatusHWM(status string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse /proc status: VmHWM line %q", sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc status VmHWM %q: %w", f[0], err)
		}
		return n, nil
	}
	return 0, errors.New("parse /proc status: no VmHWM line")
}

// procCPUTicks reads a process's CPU time so far, in clock ticks.
func procCPUTicks(pid int) (int64, error) { return readStatTicks(pid, parseStatCPU) }

// readStatTicks reads /proc/PID/stat and returns what parse makes of it.
func readStatTicks(pid int, parse func(string) (int64, error)) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	return parse(string(b))
}

// parseMachineBusy returns the clock ticks every CPU spent busy (user,
// nice, system, irq, softirq, steal: all but idle and iowait; guest time
// is counted in user already) from the text of /proc/stat.
func parseMachineBusy(stat string) (int64, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("parse /proc/stat: first line %q is not the cpu total with 8 counters", line)
	}
	var busy int64
	for i, name := range []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"} {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat %s %q: %w", name, f[i+1], err)
		}
		if name != "idle" && name != "iowait" {
			busy += n
		}
	}
	return busy, nil
}

// machineBusy reads the machine's busy CPU time so far, in clock ticks
// (see parseMachineBusy).
func machineBusy() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read machine cpu: %w", err)
	}
	return parseMachineBusy(string(b))
}

// procPeakRSS reads a process's peak resident set size, in kB.
func procPeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read peak rss of pid %d: %w", pid, err)
	}
	return parseStatusHWM(string(b))
}

// clockTicks is the kernel's USER_HZ (`getconf CLK_TCK`), 100 when getconf
// is missing (Linux's value on every common architecture).
func clockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || n <= 0 {
		return 100
	}
	return n
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// loadAvg is the 1-, 5- and 15-minute load averages of /proc/loadavg, or
// "unknown": on a shared machine they say how much else was running.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
