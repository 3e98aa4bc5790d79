#!/usr/bin/perl
# dmarc_maildmarc: the Mail::DMARC (Debian libmail-dmarc-perl) side of
# tests/integration/test_dmarc_diff.py.
#
#   perl tests/tools/dmarc_maildmarc.pl PORT [PSL-FILE] < cases
#
# Reads the same tab-separated cases as tests/tools/dmarc_eval.c
# (id, mode, pct_roll, from_domain, spf, dkim; only RFC 7489 is meaningful
# here) and prints, one line per case, tab-separated:
#   id  result  disposition  published_p  published_sp  spf_align  dkim_align  reason
# DNS goes to 127.0.0.1:PORT. pct sampling uses the case's pct_roll in place
# of rand(100), so both sides draw the same number.
use strict;
use warnings;

our $ROLL = 0;
BEGIN {
    no warnings 'once';
    # only Mail::DMARC's pct draw: Net::DNS needs real random query ids
    *CORE::GLOBAL::rand = sub {
        return $main::ROLL if caller eq 'Mail::DMARC::PurePerl';
        return CORE::rand(@_ ? $_[0] : 1);
    };
}

use Net::DNS::Resolver;
use Mail::DMARC::PurePerl;

my $port = shift @ARGV or die "usage: dmarc_maildmarc.pl PORT [PSL-FILE]\n";
my $psl = shift @ARGV || '/usr/share/publicsuffix/public_suffix_list.dat';

my $res = Net::DNS::Resolver->new(
    nameservers => ['127.0.0.1'], port => $port, recurse => 1,
    dnsrch => 0, defnames => 0, tcp_timeout => 5, udp_timeout => 5, retry => 2,
);

sub auth_list {
    my ($s, $spf) = @_;
    return [] if !defined $s || $s eq '-';
    my @out;
    for my $item (split /,/, $s) {
        my ($d, $x, $r) = split /:/, $item, 3;
        next if !defined $r;
        push @out, $spf ? { domain => $d, scope => $x, result => $r }
                        : { domain => $d, selector => $x, result => $r };
    }
    return \@out;
}

$| = 1;
while (my $line = <STDIN>) {
    chomp $line;
    next if $line eq '';
    my ($id, $mode, $roll, $from, $spf, $dkim) = split /\t/, $line;
    $ROLL = $roll;
    my $d = Mail::DMARC::PurePerl->new;
    $d->config->{dns}{public_suffix_list} = $psl;
    $d->config->{report_store}{auto_save} = 0;
    $d->set_resolver($res);
    my ($r, $err);
    eval {
        $d->header_from($from);
        $d->source_ip('192.0.2.1');
        $d->envelope_to('example.net');
        $d->spf(auth_list($spf, 1));
        $d->dkim(auth_list($dkim, 0));
        $r = $d->validate();
        1;
    } or $err = $@;
    if (!$r) {
        $err = defined $err ? $err : 'no result';
        $err =~ s/\s+/ /g;
        print join("\t", $id, 'error', '-', '-', '-', '-', '-', $err), "\n";
        next;
    }
    my ($pp, $sp) = ('-', '-');
    eval {
        my $pub = $r->published;
        if ($pub) {
            $pp = defined $pub->p ? lc $pub->p : '-';
            $sp = defined $pub->sp ? lc $pub->sp : '-';
        }
        1;
    };
    my $reason = '-';
    eval {
        my $rs = $r->reason;
        if ($rs && ref $rs eq 'ARRAY' && @$rs) {
            $reason = join(';', map { ($_->type // '') . ':' . ($_->comment // '') } @$rs);
        }
        1;
    };
    $reason =~ s/\s+/ /g;
    print join("\t", $id, $r->result // '-', $r->disposition // '-', $pp, $sp,
        $r->spf // '-', $r->dkim // '-', $reason), "\n";
}
