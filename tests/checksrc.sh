#!/bin/sh
# Bans footguns in our C sources: unbounded string functions, atoi-style parsing
# without error reporting, and wall-clock time used for measuring durations.
top=${1:-.}
status=0
for pattern in '\bsprintf *\(' '\bvsprintf *\(' '\bstrcpy *\(' '\bstrcat *\(' '\bgets *\(' \
               '\batoi *\(' '\batol *\(' '\bgettimeofday *\('; do
    if grep -nE "$pattern" "$top"/src/*.c "$top"/src/*/*.c "$top"/include/sluice/*.h 2>/dev/null; then
        echo "checksrc: banned call matching $pattern" >&2
        status=1
    fi
done
exit $status
