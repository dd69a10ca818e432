# wallet: real-time usage billing inside PostgreSQL (PGXS build)

EXTENSION = wallet
MODULE_big = wallet
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
DATA = wallet--1.0.sql wallet--1.0--1.1.sql
PGFILEDESC = "wallet - real-time usage billing"

# pg_regress suites: every sql/NAME.sql (expected/NAME.out), in name order
REGRESS = $(sort $(basename $(notdir $(wildcard $(srcdir)/sql/*.sql))))
REGRESS_OPTS = --load-extension=wallet

# isolation specs: every test/isolation/specs/NAME.spec (test/isolation/expected/NAME.out)
ISOLATION = $(sort $(basename $(notdir $(wildcard $(srcdir)/test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=wallet

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Werror

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: test demo bench deb dist
test:
	bash test/run.sh
demo:
	bash test/demo.sh

# every part includes the shared header: a change to it rebuilds them all
$(OBJS): $(srcdir)/src/wallet.h

.PHONY: valgrind
valgrind:
	bash test/valgrind.sh

# the router's companion extension (src/proxy/, see docs/scale-out.md): installed with wallet
PROXY_DATA = src/proxy/wallet_proxy.control src/proxy/wallet_proxy--1.0.sql \
	src/proxy/wallet_proxy--1.0--1.1.sql
.PHONY: install-proxy uninstall-proxy
install: install-proxy
install-proxy: installdirs
	$(INSTALL_DATA) $(addprefix $(srcdir)/, $(PROXY_DATA)) '$(DESTDIR)$(datadir)/extension/'
uninstall: uninstall-proxy
uninstall-proxy:
	rm -f $(addprefix '$(DESTDIR)$(datadir)/extension'/, $(notdir $(PROXY_DATA)))

# the Debian package postgresql-15-wallet (debian/, see docs/packaging.md), built in
# DEB_DIR (default build/deb); prints the .deb's path last
deb:
	bash test/deb.sh

# the PGXN distribution build/wallet-VERSION.zip (VERSION from META.json) of the
# committed tree (git HEAD); prints its path
dist:
	@v=$$(jq -r .version META.json) && mkdir -p build && \
	  git archive --format=zip --prefix=wallet-$$v/ -o build/wallet-$$v.zip HEAD && \
	  echo build/wallet-$$v.zip
