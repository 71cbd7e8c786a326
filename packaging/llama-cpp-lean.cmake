# Build only what shoal loads from llama-cpp-python: libllama and ggml.
#
# Given to llama-cpp-python's source build as CMAKE_ARGS="-DCMAKE_PROJECT_INCLUDE=<this file>" (the
# README's install commands and .ci/run do), it runs at each project() call and turns off, for that
# build only, llama.cpp's common library (tools' argument parsing, chat parsers, downloads) and the
# multimodal library (mtmd), which llama-cpp-python builds by default and shoal never loads. They are
# more than half of the compile time; libllama and ggml are compiled with the same flags as before
# (docs/benchmarks.md, "Install time").
set(LLAVA_BUILD OFF)
set(LLAMA_BUILD_COMMON OFF)
