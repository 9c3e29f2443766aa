/*
 * libFuzzer target for the config parser (daemon/config.c): any bytes must
 * load or fail with messages, never crash or leak; a config that loaded must
 * dump to text that loads again (the --dump-config contract).
 * Build: clang -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g
 *   -fsanitize=fuzzer,address,undefined -Idaemon tests/fuzz/fuzz_config.c
 *   daemon/config.c -lrdkafka -o build-fuzz/fuzz_config
 * Seeds: tests/fuzz/corpus/config/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = config_new(), *again = NULL;
	char err[2048], names[512];
	char *dump = NULL;
	size_t dump_len = 0;
	FILE *mem;

	if (cfg == NULL)
		return 0;
	if (config_load_buffer(cfg, "fuzz", (const char *)data, size, err, sizeof(err)) < 0) {
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			abort();  /* a failure always says why */
		goto done;
	}
	mem = open_memstream(&dump, &dump_len);
	if (mem == NULL)
		goto done;
	config_dump(cfg, mem);
	fclose(mem);
	again = config_new();
	if (again == NULL)
		goto done;
	if (config_load_buffer(again, "dump", dump, dump_len, err, sizeof(err)) < 0) {
		fprintf(stderr, "dump does not reload: %s\n--- dump:\n%s", err, dump);
		abort();
	}
	(void)config_restart_keys(cfg, again, names, sizeof(names));
done:
	free(dump);
	config_free(again);
	config_free(cfg);
	return 0;
}
