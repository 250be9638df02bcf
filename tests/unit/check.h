/*
 * check.h -- the tiny unit-test harness: each test is a function, run in
 * a forked child so that a crash fails one test, not the program.
 *
 *   static void t_parse(void) { CHECK(x == 1); CHECK_STR(s, "a"); }
 *   int main(void) { RUN(t_parse); return check_done(); }
 *
 * Output ends with "N passed, N failed"; the exit status is 1 if any
 * failed (77 makes meson count the program as skipped: check_skip()).
 */
#ifndef MAILHAUL_TESTS_CHECK_H
#define MAILHAUL_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int check_passed, check_failed, check_child_failed;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "  %s:%d: CHECK(%s) failed\n",		\
		    __FILE__, __LINE__, #cond);				\
		check_child_failed = 1;					\
	}								\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *check_a_ = (a), *check_b_ = (b);			\
	if (check_a_ == NULL || check_b_ == NULL ||			\
	    strcmp(check_a_, check_b_) != 0) {				\
		fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n",		\
		    __FILE__, __LINE__, check_a_ ? check_a_ : "(null)",	\
		    check_b_ ? check_b_ : "(null)");			\
		check_child_failed = 1;					\
	}								\
} while (0)

/* True when haystack contains needle. */
#define CHECK_CONTAINS(hay, needle) do {				\
	const char *check_h_ = (hay), *check_n_ = (needle);		\
	if (check_h_ == NULL || strstr(check_h_, check_n_) == NULL) {	\
		fprintf(stderr, "  %s:%d: \"%s\" does not contain \"%s\"\n",\
		    __FILE__, __LINE__, check_h_ ? check_h_ : "(null)",	\
		    check_n_);						\
		check_child_failed = 1;					\
	}								\
} while (0)

static inline void
check_run(const char *name, void (*fn)(void))
{
	pid_t	pid;
	int	status;

	fflush(NULL);
	if ((pid = fork()) == 0) {
		check_child_failed = 0;
		fn();
		fflush(NULL);
		_exit(check_child_failed ? 1 : 0);
	}
	if (pid == -1 || waitpid(pid, &status, 0) == -1) {
		perror("fork/waitpid");
		exit(1);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("ok   %s\n", name);
		check_passed++;
	} else {
		if (WIFSIGNALED(status))
			printf("FAIL %s (signal %d)\n", name, WTERMSIG(status));
		else
			printf("FAIL %s\n", name);
		check_failed++;
	}
}

#define RUN(fn) check_run(#fn, fn)

static inline int
check_done(void)
{
	printf("%d passed, %d failed\n", check_passed, check_failed);
	return check_failed ? 1 : 0;
}

static inline void
check_skip(const char *why)
{
	printf("skipped: %s\n", why);
	exit(77);
}

#endif
