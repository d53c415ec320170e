defmodule Snakepit.Telemetry.Glob do
  @moduledoc false
  # Glob matching with the meaning of Python's fnmatch.fnmatchcase, the one
  # the worker applies (and Rust's snakepit_telemetry_core::glob): `*` any
  # run of characters, `?` one, `[abc]` / `[a-z]` / `[!abc]` classes, a `]`
  # first in a class is literal, a `[` without its `]` is literal. The cases
  # of priv/catalog/value_rules.json hold all three to the same answers.
  # Used to expand patterns written with Elixir event names.

  @doc "True when `name` matches `pattern`."
  @spec match?(String.t(), String.t()) :: boolean
  def match?(pattern, name), do: Regex.match?(compile(pattern), name)

  @doc "The anchored regex of a glob."
  @spec compile(String.t()) :: Regex.t()
  def compile(pattern) do
    Regex.compile!("\\A" <> translate(pattern, []) <> "\\z", "s")
  end

  defp translate(<<>>, acc), do: acc |> Enum.reverse() |> IO.iodata_to_binary()
  defp translate(<<"*", rest::binary>>, acc), do: translate(rest, [".*" | acc])
  defp translate(<<"?", rest::binary>>, acc), do: translate(rest, ["." | acc])

  defp translate(<<"[", rest::binary>>, acc) do
    case class(rest) do
      {:ok, regex, rest} -> translate(rest, [regex | acc])
      :error -> translate(rest, ["\\[" | acc])
    end
  end

  defp translate(<<c::utf8, rest::binary>>, acc),
    do: translate(rest, [Regex.escape(<<c::utf8>>) | acc])

  # A class body up to its closing `]` (a `]` right after `[` or `[!` is
  # part of the class).
  defp class(<<"!", rest::binary>>), do: class_body(rest, "^")
  defp class(rest), do: class_body(rest, "")

  defp class_body(<<"]", rest::binary>>, negate), do: close(rest, negate, ["\\]"])
  defp class_body(rest, negate), do: close(rest, negate, [])

  defp close(<<>>, _negate, _members), do: :error

  defp close(<<"]", rest::binary>>, negate, members),
    do: {:ok, ["[", negate, Enum.reverse(members), "]"], rest}

  defp close(<<"-", rest::binary>>, negate, members), do: close(rest, negate, ["-" | members])

  defp close(<<c::utf8, rest::binary>>, negate, members),
    do: close(rest, negate, [escape_in_class(c) | members])

  defp escape_in_class(c) when c in [?\\, ?^, ?[], do: [?\\, c]
  defp escape_in_class(c), do: <<c::utf8>>
end
